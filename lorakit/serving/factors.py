"""Every LoRA update as one plain rank-R pair ``(A, B)``: what serving and PEFT files need.

A lorakit model holds three kinds of LoRA layer (:class:`lorakit.LoRALinear`,
:class:`lorakit.FusedLoRALinear`, :class:`lorakit.LoRAEmbedding`). Their updates all have the form
``ΔW = s · B A`` (``s`` = α/r, or α/√r with rsLoRA), once the fused layer's per-slice ``B_i`` are
placed in one block matrix. For GPT-2's ``c_attn`` with q and v adapted at rank r::

    A = [A_q ; A_v]            (2r, k)        B = [[B_q, 0  ],      (3d, 2r)
                                                  [0,   0  ],      <- the k rows: zero
                                                  [0,   B_v]]

Then ``B A = [B_q A_q ; 0 ; B_v A_v]``: each slice's update in its own rows, nothing in k's, so
one rank-2r LoRA on the whole ``c_attn`` computes exactly the q,v adapter. That is the form a
PEFT file stores (:mod:`lorakit.peft_io`) and the form the multi-adapter layers stack
(:mod:`lorakit.serving`). :class:`Factors` holds it for one module.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lorakit.lora import FusedLoRALinear, LoRAEmbedding, LoRALinear, lora_layers

KINDS = ("linear", "conv1d", "embedding")


@dataclass
class Factors:
    """One module's LoRA update ``ΔW = scaling · B A`` in the paper's layout.

    Attributes
    ----------
    kind : ``"linear"`` (``nn.Linear``), ``"conv1d"`` (transformers' ``Conv1D``, weight stored
        (in, out)) or ``"embedding"`` (``nn.Embedding``, ``k`` = the vocabulary size V).
    A : tensor (R, k)
    B : tensor (d, R); for an embedding, ``d`` is the embedding width.
    scaling : the factor ``s`` in front of ``B A``.
    enable : for a fused layer (GPT-2's ``c_attn``), which equal output slices have LoRA
        (q, k, v); ``B`` is then the block matrix of the module docstring. ``None`` otherwise.
    """

    kind: str
    A: torch.Tensor
    B: torch.Tensor
    scaling: float
    enable: tuple[bool, ...] | None = None

    @property
    def rank(self) -> int:
        """``R``, the number of rows of ``A`` (for a fused layer, enabled slices × r)."""
        return self.A.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        """``(d, k)``: output and input size of the update (``(width, V)`` for an embedding)."""
        return self.B.shape[0], self.A.shape[1]

    def delta(self) -> torch.Tensor:
        """``ΔW = scaling · B A`` in fp32, (d, k)."""
        return self.scaling * (self.B.float() @ self.A.float())


def block_B(B: torch.Tensor, enable: Sequence[bool]) -> torch.Tensor:
    """Place per-slice ``B`` (n_en, d_s, r) in one block matrix (n·d_s, n_en·r), zeros elsewhere.

    Enabled slice ``j`` (the j-th True of ``enable``, output slice ``i``) gets rows
    ``i·d_s:(i+1)·d_s`` and columns ``j·r:(j+1)·r``.
    """
    n_en, d_s, r = B.shape
    on = [i for i, e in enumerate(enable) if e]
    if len(on) != n_en:
        raise ValueError(f"B holds {n_en} slices but enable={tuple(enable)} turns on {len(on)}.")
    out = B.new_zeros(len(enable) * d_s, n_en * r)
    for j, i in enumerate(on):
        out[i * d_s : (i + 1) * d_s, j * r : (j + 1) * r] = B[j]
    return out


def split_block_B(B: torch.Tensor, n_slices: int, tol: float = 0.0):
    """The inverse of :func:`block_B` when ``B`` (n·d_s, R) has that structure, else ``None``.

    Returns ``(B per slice (n_en, d_s, r), enable)`` when the slices whose rows are not all zero
    (at most ``tol`` in size) each use their own ``r = R / n_en`` columns in order and are zero
    in the others. A B trained as one unsliced matrix has no such zeros and gives ``None``.
    """
    d, R = B.shape
    if d % n_slices:
        return None
    d_s = d // n_slices
    rows = B.reshape(n_slices, d_s, R)
    enable = tuple(bool(rows[i].abs().max() > tol) for i in range(n_slices))
    n_en = sum(enable)
    if n_en == 0 or R % n_en:
        return None
    r = R // n_en
    parts = []
    for j, i in enumerate(i for i, e in enumerate(enable) if e):
        outside = torch.cat([rows[i, :, : j * r], rows[i, :, (j + 1) * r :]], dim=1)
        if outside.numel() and outside.abs().max() > tol:
            return None
        parts.append(rows[i, :, j * r : (j + 1) * r])
    return torch.stack(parts), enable


def _kind(module: nn.Module) -> str:
    if isinstance(module, nn.Embedding):
        return "embedding"
    if isinstance(module, nn.Linear):
        return "linear"
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
        return "conv1d"
    raise TypeError(
        f"{type(module).__name__} is not a layer LoRA adapts (nn.Linear, Conv1D, nn.Embedding)."
    )


def module_kind(module: nn.Module) -> str:
    """``"linear"``, ``"conv1d"`` or ``"embedding"`` for a base layer; raises ``TypeError`` else."""
    return _kind(module)


def base_shape(module: nn.Module) -> tuple[int, int]:
    """``(d, k)`` of a base layer as its LoRA update sees it (``(width, V)`` for an embedding)."""
    kind = _kind(module)
    w = module.weight
    if kind == "embedding":
        return w.shape[1], w.shape[0]
    return (w.shape[1], w.shape[0]) if kind == "conv1d" else (w.shape[0], w.shape[1])


def factors_of_layer(layer: nn.Module) -> Factors:
    """The :class:`Factors` of one lorakit LoRA layer (detached; same dtype and device)."""
    if isinstance(layer, LoRAEmbedding):
        return Factors("embedding", layer.lora_A.detach(), layer.lora_B.detach(), layer.scaling)
    if isinstance(layer, FusedLoRALinear):
        return Factors(
            _kind(layer.base),
            layer.lora_A.detach(),
            block_B(layer.lora_B.detach(), layer.enable),
            layer.scaling,
            tuple(layer.enable),
        )
    if isinstance(layer, LoRALinear):
        return Factors(
            _kind(layer.base), layer.lora_A.detach(), layer.lora_B.detach(), layer.scaling
        )
    raise TypeError(f"{type(layer).__name__} is not a lorakit LoRA layer.")


def factors_of_model(model: nn.Module) -> dict[str, Factors]:
    """``{module name: Factors}`` for every LoRA layer of ``model`` (merged or not)."""
    from lorakit.checkpoint import _plain_name, _unwrap

    out = {
        _plain_name(name): factors_of_layer(layer) for name, layer in lora_layers(_unwrap(model))
    }
    if not out:
        raise ValueError(
            "The model has no LoRA layers; train one with lorakit.apply_lora, or "
            "pass the folder of a saved adapter."
        )
    return out


def factors_of_adapter(path: str | os.PathLike) -> tuple[dict[str, Factors], dict]:
    """Read a folder written by :func:`lorakit.save_adapter`: ``({name: Factors}, lora settings)``.

    Raises :class:`lorakit.AdapterError` for a corrupt or foreign folder (see
    :func:`lorakit.read_adapter`).
    """
    from lorakit.checkpoint import read_adapter

    meta, tensors = read_adapter(Path(path))
    lora = meta["lora"]
    r, alpha = lora["r"], lora.get("alpha") or lora["r"]
    scaling = alpha / math.sqrt(r) if lora.get("rslora", False) else alpha / r
    out = {}
    for name, mod in meta["modules"].items():
        A, B = tensors[f"{name}.lora_A"], tensors[f"{name}.lora_B"]
        enable = tuple(mod["enable"]) if mod.get("enable") else None
        if enable is not None:
            B = block_B(B, enable)
        out[name] = Factors(mod["kind"], A, B, scaling, enable)
    return out, dict(lora)
