"""The fused LoRA path: the same formula as the layers, in fewer kernels. Off by default.

A LoRA layer (:class:`lorakit.LoRALinear`, :class:`lorakit.FusedLoRALinear`) computes
``W0 x + (α/r)·B A dropout(x)`` (paper §4.1) in plain PyTorch ops. That is the code a reader
opens, and what autograd, ``torch.compile`` and every tool see. With ``fast_path`` on, the layer
computes the same thing through the hand-written nodes here (:func:`fused_forward`):

* :class:`~lorakit.lora.fast.function.StackedMatmul`, used while autograd records on a plain
  ``nn.Linear``/``Conv1D`` base, runs base and branch as one matmul on a stacked input and weight,
  ``[x | A·dropout(x)] [W0 ; (α/r)·Bᵀ]``, with a hand-written backward that keeps
  ``dropout(x)``, ``A·dropout(x)`` and the dropout's decisions rather than ``x``;
* :class:`~lorakit.lora.fast.function.BranchUpdate` (other bases, and calls without autograd)
  adds the branch onto ``base(x)`` as one node;
* inside CUDA graph capture, on CUDA in bf16/fp16 with Triton installed, two Triton kernels
  (:mod:`lorakit.lora.fast.kernels`) do the branch's dropout without storing a mask.

When it pays. The fused path launches fewer, larger kernels and moves fewer bytes, but its
backward runs as Python code that the host executes on every step. In an eager step of a
GPT-2-sized model the GPU is waiting for the host (the step is launch-bound), so that Python
costs more than the kernels save. Inside a captured CUDA graph the host does nothing per replay,
and only the GPU's work counts: there fewer kernels and fewer bytes make the step faster. So the
trainer turns it on when it captures steps as CUDA graphs, and ``python -m lorakit.bench
train-step`` measures it; elsewhere, keep the formula. ``torch.compile`` is given the formula
whatever ``fast_path`` says: the compiler fuses the plain ops itself, whereas the hand-written
nodes would break its graph at every layer (:func:`fused_forward` says what that costs).

Both paths give the same outputs and gradients up to rounding order (tests compare them in
float64 with the same dropout decisions); only the Triton kernels draw other decisions than
``nn.Dropout``, with the same distribution.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from . import kernels
from .function import fused_forward

__all__ = ["fast_path", "fast_path_layers", "fused_forward", "kernels", "set_fast_path"]


def fast_path_layers(model: nn.Module) -> list[nn.Module]:
    """The LoRA layers of ``model`` that have a fused path (``LoRALinear`` and its subclasses).

    ``LoRAEmbedding`` has none (a lookup is not a matmul) and is not listed.
    """
    from ..layers import LoRALinear  # here, not at the top: the layers import this package

    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def set_fast_path(model: nn.Module, enabled: bool = True) -> int:
    """Switch the fused path on (or off) in every LoRA layer of ``model``.

    Parameters
    ----------
    model : nn.Module
        Any model; a LoRA layer itself works too.
    enabled : bool
        ``True``: the layers run :func:`fused_forward`; ``False``: the plain formula (default).

    Returns
    -------
    int
        How many layers were set (0 for a model without ``LoRALinear`` layers).
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, got {enabled!r}.")
    layers = fast_path_layers(model)
    for layer in layers:
        layer.fast_path = enabled
    return len(layers)


@contextmanager
def fast_path(model: nn.Module, enabled: bool = True) -> Iterator[int]:
    """``with fast_path(model):`` sets the fused path as :func:`set_fast_path` does, and on exit
    gives each layer back the value it had before. Yields the number of layers set."""
    layers = fast_path_layers(model)
    before = [layer.fast_path for layer in layers]
    try:
        yield set_fast_path(model, enabled)
    finally:
        for layer, old in zip(layers, before):
            layer.fast_path = old
