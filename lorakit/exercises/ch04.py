"""Chapter 4 exercises: LoRA inside GPT-2 (paper §4, §4.2): LoRA on the q and v slices of GPT-2's
fused ``c_attn``, how many parameters, how much memory.

The references are the notebook's solutions, the same code (the notebook's cells carry
``# sync: lorakit.exercises.ch04.<name>``); later cells use these, so a student version runs to
the end whatever state the learner's exercises are in.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from lorakit.exercises.compare import (
    as_number,
    assert_close,
    assert_grad,
    assert_shape,
    build_module,
    check_int_cases,
    fail,
)
from lorakit.exercises.core import register

# ----------------------------------------------------------------------------- references


class QVLoRA(nn.Module):
    """LoRA on the q and v slices of GPT-2's fused ``attn.c_attn``; the k slice stays as it was.

    ``c_attn`` is a transformers ``Conv1D``: ``h = x @ W + b`` with ``W`` stored (in, out) =
    ``(k, 3d)``, columns ``[0:d]`` for q, ``[d:2d]`` for k, ``[2d:3d]`` for v. In the paper's
    layout ``W_q = W[:, :d].T`` is ``(d, k)``; q and v each get ``A (r, k)`` (Gaussian) and
    ``B (d, r)`` (zero): ``lora_A_q``, ``lora_B_q``, ``lora_A_v``, ``lora_B_v``.
    Input ``(..., k)``, output ``(..., 3d)``.
    """

    def __init__(self, c_attn: nn.Module, r: int, alpha: float) -> None:
        super().__init__()
        self.base = c_attn
        for p in self.base.parameters():
            p.requires_grad_(False)
        k, three_d = c_attn.weight.shape  # Conv1D: (in, out)
        self.d = three_d // 3
        self.scaling = alpha / r
        self.lora_A_q = nn.Parameter(torch.randn(r, k) / math.sqrt(k))
        self.lora_B_q = nn.Parameter(torch.zeros(self.d, r))
        self.lora_A_v = nn.Parameter(torch.randn(r, k) / math.sqrt(k))
        self.lora_B_v = nn.Parameter(torch.zeros(self.d, r))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dq = self.scaling * (x @ self.lora_A_q.T @ self.lora_B_q.T)  # (..., d)
        dv = self.scaling * (x @ self.lora_A_v.T @ self.lora_B_v.T)
        return self.base(x) + torch.cat([dq, torch.zeros_like(dq), dv], dim=-1)

    def merged_weight(self) -> torch.Tensor:
        """``W + ΔW`` in Conv1D's ``(k, 3d)`` layout: ``ΔW_q = s B_q A_q`` is ``(d, k)``, so it
        enters transposed. A new tensor; the base is not changed."""
        W = self.base.weight.detach().clone()
        W[:, : self.d] += (self.scaling * self.lora_B_q @ self.lora_A_q).T.detach()
        W[:, 2 * self.d :] += (self.scaling * self.lora_B_v @ self.lora_A_v).T.detach()
        return W


def lora_param_count(n_layers: int, d_model: int, r: int, n_matrices: int = 2) -> int:
    """Trainable parameters of LoRA on ``n_matrices`` square (d x d) attention weights per layer.

    The paper's |Θ| = 2 · L̂ · d_model · r (§4.2, §5.1), where L̂ = n_matrices · n_layers is the
    number of adapted weight matrices and each one gets A (r, d) and B (d, r).
    """
    adapted = n_matrices * n_layers
    return 2 * adapted * d_model * r


def adam_memory_bytes(
    n_params: int, n_trainable: int, bytes_per_value: int = 2, count_gradients: bool = True
) -> int:
    """Bytes that training with Adam holds for the model, activations not counted: every weight,
    plus for each trainable parameter Adam's two moment estimates and (``count_gradients``) its
    gradient.

    ``bytes_per_value`` is 2 for fp16/bf16, 4 for fp32. ``count_gradients=False`` is the paper's
    accounting of "up to 2/3" saved (§4.2): weights and two moments, three copies, become one.
    """
    copies_per_trainable = 3 if count_gradients else 2
    return bytes_per_value * (n_params + copies_per_trainable * n_trainable)


# ----------------------------------------------------------------------------- typical mistakes


def _count_one_factor(n_layers, d_model, r, n_matrices=2):
    return n_matrices * n_layers * d_model * r  # forgets that A and B each hold d·r


def _count_ignores_matrices(n_layers, d_model, r, n_matrices=2):
    return 2 * n_layers * d_model * r  # L̂ = L: one matrix per layer


def _count_with_frozen(n_layers, d_model, r, n_matrices=2):
    adapted = n_matrices * n_layers  # counts the frozen W0 (d x d) as well
    return 2 * adapted * d_model * r + adapted * d_model * d_model


def _adam_no_grads(n_params, n_trainable, bytes_per_value=2, count_gradients=True):
    return bytes_per_value * (n_params + 2 * n_trainable)  # ignores count_gradients


def _adam_all_params(n_params, n_trainable, bytes_per_value=2, count_gradients=True):
    return bytes_per_value * (4 if count_gradients else 3) * n_params  # as if everything trained


def _adam_fixed_fp32(n_params, n_trainable, bytes_per_value=2, count_gradients=True):
    return 4 * (n_params + (3 if count_gradients else 2) * n_trainable)


def _adam_grads_for_frozen(n_params, n_trainable, bytes_per_value=2, count_gradients=True):
    grads = n_params if count_gradients else 0  # a gradient for every weight, frozen ones too
    return bytes_per_value * (n_params + grads + 2 * n_trainable)


class _QVStub(nn.Module):  # what the student version holds
    def __init__(self, c_attn, r, alpha):
        super().__init__()
        raise NotImplementedError("Exercise ch04.qv_lora")


class _QVOnK(QVLoRA):
    """Puts the second update on the k slice instead of v."""

    def forward(self, x):
        dq = self.scaling * (x @ self.lora_A_q.T @ self.lora_B_q.T)
        dv = self.scaling * (x @ self.lora_A_v.T @ self.lora_B_v.T)
        return self.base(x) + torch.cat([dq, dv, torch.zeros_like(dq)], dim=-1)


class _QVMergeNotTransposed(QVLoRA):
    """Adds ΔW (d, k) to the (k, d) blocks as it is: silently wrong when k == d."""

    def merged_weight(self):
        W = self.base.weight.detach().clone()
        W[:, : self.d] += (self.scaling * self.lora_B_q @ self.lora_A_q).detach()
        W[:, 2 * self.d :] += (self.scaling * self.lora_B_v @ self.lora_A_v).detach()
        return W


class _QVNoScaling(QVLoRA):
    def __init__(self, c_attn, r, alpha):
        super().__init__(c_attn, r, alpha)
        self.scaling = 1.0


class _QVNotFrozen(QVLoRA):
    def __init__(self, c_attn, r, alpha):
        super().__init__(c_attn, r, alpha)
        self.base.requires_grad_(True)


class _QVRandomB(QVLoRA):
    def __init__(self, c_attn, r, alpha):
        super().__init__(c_attn, r, alpha)
        with torch.no_grad():
            self.lora_B_q.normal_(0, 0.02)
            self.lora_B_v.normal_(0, 0.02)


# ----------------------------------------------------------------------------- checkers


@register(
    "ch04.lora_param_count",
    reference=lora_param_count,
    wrong=[_count_one_factor, _count_ignores_matrices, _count_with_frozen],
)
def _check_lora_param_count(candidate) -> None:
    cases = [
        ((24, 1024, 4), 393_216),  # GPT-2 M, q and v: the paper's 0.35M
        ((96, 12288, 4), 18_874_368),  # GPT-3 175B, q and v: about 18M
        ((12, 768, 1, 1), 18_432),  # one matrix per layer
        ((2, 10, 3, 4), 480),
    ]
    check_int_cases("lora_param_count", candidate, cases)


@register(
    "ch04.adam_memory_bytes",
    reference=adam_memory_bytes,
    wrong=[_adam_no_grads, _adam_all_params, _adam_fixed_fp32, _adam_grads_for_frozen],
)
def _check_adam_memory_bytes(candidate) -> None:
    gpt3, theta = 175_000_000_000, 18_874_368
    cases = [
        ((gpt3, gpt3, 2), 1_400_000_000_000),  # GPT-3 full FT, fp16: 4 copies
        ((gpt3, theta, 2), 350_113_246_208),  # GPT-3 LoRA
        ((1000, 10, 4), 4120),
        ((1000, 0, 2), 2000),
        ((gpt3, gpt3, 2, False), 1_050_000_000_000),  # the paper's 3 copies (no gradients)
        ((gpt3, theta, 2, False), 350_075_497_472),
        ((1000, 10, 4, False), 4080),
    ]
    check_int_cases("adam_memory_bytes", candidate, cases)


@register(
    "ch04.qv_lora",
    reference=QVLoRA,
    stub=lambda: _QVStub,
    wrong=[_QVOnK, _QVMergeNotTransposed, _QVNoScaling, _QVNotFrozen, _QVRandomB],
)
def _check_qv_lora(candidate) -> None:
    from transformers.pytorch_utils import Conv1D

    from lorakit import FusedLoRALinear

    d = k = 8  # square, as in GPT-2 (in = d_model): a missing transpose does not fail by shape
    r, alpha = 2, 6.0
    torch.manual_seed(0)
    c_attn = Conv1D(3 * d, k)
    with torch.no_grad():
        c_attn.weight.normal_(0, 0.5)
        c_attn.bias.normal_(0, 0.5)
    w0, b0 = c_attn.weight.detach().clone(), c_attn.bias.detach().clone()
    params = ("lora_A_q", "lora_B_q", "lora_A_v", "lora_B_v")
    layer = build_module(candidate, (c_attn, r, alpha), params)
    for name, shape in (
        ("lora_A_q", (r, k)),
        ("lora_B_q", (d, r)),
        ("lora_A_v", (r, k)),
        ("lora_B_v", (d, r)),
    ):
        assert_shape(name, getattr(layer, name), shape)
    for name, p in c_attn.named_parameters():
        if p.requires_grad:
            fail(
                f"c_attn's {name} still has requires_grad=True: freeze every parameter of the base"
            )
    if any(bool(getattr(layer, n).detach().any()) for n in ("lora_B_q", "lora_B_v")):
        fail("lora_B_q and lora_B_v should start at zero, so the layer starts equal to c_attn")
    if any(float(getattr(layer, n).detach().std()) == 0 for n in ("lora_A_q", "lora_A_v")):
        fail("lora_A_q and lora_A_v should start random (Gaussian), not constant")
    if not math.isclose(
        as_number("layer.scaling", getattr(layer, "scaling", float("nan"))), alpha / r
    ):
        fail(f"layer.scaling: expected alpha / r = {alpha:g} / {r} = {alpha / r:g}")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, k, generator=g)
    assert_close("output at initialisation (should equal c_attn(x))", layer(x), c_attn(x).detach())
    factors = {
        n: torch.randn(getattr(layer, n).shape, generator=g)
        for n in ("lora_A_q", "lora_B_q", "lora_A_v", "lora_B_v")
    }
    with torch.no_grad():
        for n, value in factors.items():
            getattr(layer, n).copy_(value)
    fused = FusedLoRALinear(copy.deepcopy(c_attn), r=r, alpha=alpha, enable=(True, False, True))
    with torch.no_grad():
        for s in ("q", "v"):
            A, B = fused.factors()[s]
            A.copy_(factors[f"lora_A_{s}"])
            B.copy_(factors[f"lora_B_{s}"])
    out = layer(x)
    with torch.no_grad():
        ref = fused(x)
        assert_close(
            "k slice of the output (k has no LoRA: it must equal c_attn's)",
            out[..., d : 2 * d],
            c_attn(x)[..., d : 2 * d],
        )
    assert_close(
        "output with non-zero A and B (against lorakit.FusedLoRALinear on the same weights)",
        out,
        ref,
        atol=1e-4,
    )
    (out**2).sum().backward()
    for name, p in c_attn.named_parameters():
        assert_grad(f"c_attn.{name}", p, "none")
    for n in factors:
        assert_grad(n, getattr(layer, n), "nonzero")
    if not (torch.equal(c_attn.weight, w0) and torch.equal(c_attn.bias, b0)):
        fail("the layer changed c_attn's weight or bias; W0 must stay as it was")
    merged = layer.merged_weight()
    fused.merge()
    assert_close(
        "merged_weight() (Conv1D layout (in, out): each (d, k) ΔW enters transposed)",
        merged,
        fused.base.weight,
        atol=1e-4,
    )
    if not torch.equal(c_attn.weight, w0):
        fail("merged_weight() changed c_attn's weight in place; return a new tensor")
