"""Mixed precision for LoRA training: store the frozen matmul weights in the compute dtype.

The usual mixed-precision recipe keeps fp32 weights and runs the matmuls in bf16 under
``torch.autocast``. The fp32 copy is the *master* weight: the optimizer updates it in full
precision, and autocast casts it to bf16 for every matmul. A frozen weight is never updated, so
its fp32 master buys nothing, and it costs three things on every step:

* a cast kernel per weight per forward (autocast caches casts only for weights that require
  grad), which on a GPU adds launches to a step that is already launch-bound;
* the bf16 copy that the matmul keeps for backward, besides the fp32 weight itself;
* twice the memory for the weights themselves.

:func:`cast_frozen_` stores those weights in bf16 once. Under autocast the result is *the same
computation*: autocast would have rounded the fp32 weight to bf16 (round-to-nearest-even, as
``Tensor.to`` does) before each matmul anyway. Only weights that autocast always rounds are cast:
those of ``nn.Linear`` and transformers' ``Conv1D`` layers (LoRA's frozen base layers included),
and only when no other kind of module shares them. GPT-2's token embedding is tied to its LM
head, and an embedding lookup is not autocast, so it stays fp32 (the residual stream then stays
fp32 too). LayerNorm parameters and biases of other modules are left alone. The trainable LoRA
factors keep their fp32 master weights.

Loading a model with ``from_pretrained(..., torch_dtype=torch.bfloat16)``, common in LoRA
recipes, goes further: it also rounds the embedding and LayerNorm weights, and the residual stream
then runs in bf16, which does change the model's function.
"""

from __future__ import annotations

import torch
from torch import nn

from .kinds import is_linear

__all__ = ["cast_frozen_", "frozen_matmul_weights"]


def frozen_matmul_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters :func:`cast_frozen_` would cast: ``{qualified name: parameter}``.

    A parameter qualifies when it does not require grad, is floating point, and every module that
    holds it (tied weights are held by several) is an ``nn.Linear`` or ``Conv1D``: the layers whose
    forward autocast always runs in the low-precision dtype.
    """
    holders: dict[int, list[nn.Module]] = {}
    names: dict[int, str] = {}
    params: dict[int, nn.Parameter] = {}
    for mod_name, module in model.named_modules(remove_duplicate=False):
        for p_name, p in module.named_parameters(recurse=False):
            holders.setdefault(id(p), []).append(module)
            names.setdefault(id(p), f"{mod_name}.{p_name}" if mod_name else p_name)
            params[id(p)] = p
    return {
        names[i]: p
        for i, p in params.items()
        if not p.requires_grad and p.is_floating_point() and all(is_linear(m) for m in holders[i])
    }


def cast_frozen_(model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> list[str]:
    """Store the frozen weights of the model's linear layers in ``dtype``, in place.

    Call it after freezing (e.g. after :func:`lorakit.apply_lora`) and train under
    ``torch.autocast(..., dtype=dtype)``, as :func:`lorakit.train.train` does on CUDA. Forward
    and backward are then exactly what they were with fp32 frozen weights (autocast rounded them
    to ``dtype`` before every matmul anyway), minus one cast kernel per weight per step, minus the
    bf16 copy each matmul kept for backward, and with half the memory for those weights.

    Parameters
    ----------
    model : nn.Module
        Any model; only parameters listed by :func:`frozen_matmul_weights` change.
    dtype : torch.dtype
        ``torch.bfloat16`` (default) or ``torch.float16``: the autocast dtype you train with.

    Returns
    -------
    list of str
        The names of the parameters that were cast.

    Notes
    -----
    The rounding cannot be undone: casting back to fp32 gives the bf16 values. Without autocast,
    an fp32 input meets a bf16 weight and PyTorch raises a dtype error, so run such a model under
    autocast (or cast the inputs). :func:`lorakit.merge_lora` still works: it adds ΔW in fp32 and
    rounds the sum to the weight's dtype, so merged weights carry bf16 rounding.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(
            f"dtype must be a floating-point torch.dtype such as torch.bfloat16, got {dtype!r}."
        )
    frozen = frozen_matmul_weights(model)
    if not frozen:
        raise ValueError(
            "cast_frozen_ found no frozen weight in an nn.Linear or Conv1D layer, so there is "
            "nothing to cast. Freeze the base model first (e.g. lorakit.apply_lora(model, cfg)); "
            "trainable weights keep their fp32 master copy on purpose."
        )
    with torch.no_grad():
        for p in frozen.values():
            p.data = p.data.to(dtype)
    return list(frozen)
