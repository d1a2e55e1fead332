"""Chapter 3 exercises, continued: LoRA's gradients by hand, and the loss floor of a rank sweep.

The references are the notebook's solutions, the same code (``# sync:`` cells). Chapter 3's first
four exercises (forward, layer, merge, unmerge) are in :mod:`lorakit.exercises.ch03`.
"""

from __future__ import annotations

import math

import torch

from lorakit.exercises.ch03 import ALPHA, D, _factors, lora_forward
from lorakit.exercises.compare import as_number
from lorakit.exercises.core import assert_close, fail, register

# ----------------------------------------------------------------------------- references


def lora_grads(
    x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, alpha: float, grad_h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of a loss with respect to ``A`` and ``B``, by hand (no autograd).

    ``h = x W0^T + s · x A^T B^T`` with ``s = α/r``; given ``grad_h = ∂L/∂h``, the chain rule through
    the thin ``u = x A^T`` gives ``∂L/∂B = s · grad_h^T u`` and ``∂L/∂A = s · (grad_h B)^T x``,
    summed over every row of the batch. ``W0`` does not enter: it is frozen and only adds to ``h``.

    Parameters
    ----------
    x : (..., k);  A : (r, k);  B : (d, r);  alpha : float;  grad_h : (..., d), the same leading
        shape as ``x``.

    Returns
    -------
    (grad_A, grad_B)
        ``(r, k)`` and ``(d, r)``. With ``B = 0`` (LoRA's start) ``grad_A`` is exactly zero.
    """  # noqa: E501
    s = alpha / A.shape[0]
    X = x.reshape(-1, x.shape[-1])  # (N, k): every row of the batch
    G = grad_h.reshape(-1, grad_h.shape[-1])  # (N, d)
    grad_B = s * G.T @ (X @ A.T)  # (d, N) @ (N, r)
    grad_A = s * (G @ B).T @ X  # (r, N) @ (N, k)
    return grad_A, grad_B


def eckart_young_floor(dW_true: torch.Tensor, r: int) -> float:
    """The lowest loss a rank-``r`` update can reach on section 5's task, before any training.

    The loss is ``mean((ΔW x - ΔW_true x)²)`` over a batch and the ``d`` outputs, with
    ``x ~ N(0, I)``; its expectation is ``||ΔW - ΔW_true||_F² / d``. By Eckart–Young the best
    rank-``r`` ``ΔW`` keeps the ``r`` largest singular directions of ``ΔW_true``, which leaves
    ``sum_{i>r} σ_i² / d``.

    Parameters
    ----------
    dW_true : (d, k) tensor;  r : int, ``0 <= r``.
    """
    s = torch.linalg.svdvals(dW_true.double())
    return float((s[r:] ** 2).sum() / dW_true.shape[0])


# ----------------------------------------------------------------------------- gradients by hand


def _grads_no_scaling(x, A, B, alpha, grad_h):
    g_a, g_b = lora_grads(x, A, B, alpha, grad_h)
    s = alpha / A.shape[0]
    return g_a / s, g_b / s


def _grads_swapped_chain(x, A, B, alpha, grad_h):
    """grad_B from x instead of u = x A^T, padded to (d, r): forgets that B sees A x."""
    s = alpha / A.shape[0]
    X, G = x.reshape(-1, x.shape[-1]), grad_h.reshape(-1, grad_h.shape[-1])
    return s * (G @ B).T @ X, s * G.T @ X[:, : A.shape[0]]


def _grads_first_row_only(x, A, B, alpha, grad_h):
    """Treats x as one example: only the last 2 dimensions, the batch's first slice."""
    if x.dim() > 2:
        x, grad_h = x[0], grad_h[0]
    return lora_grads(x, A, B, alpha, grad_h)


def _grads_autograd_free_mean(x, A, B, alpha, grad_h):
    """Averages over the batch instead of summing."""
    n = x.reshape(-1, x.shape[-1]).shape[0]
    g_a, g_b = lora_grads(x, A, B, alpha, grad_h)
    return g_a / n, g_b / n


@register(
    "ch03.lora_grads",
    reference=lora_grads,
    wrong=[
        _grads_no_scaling,
        _grads_swapped_chain,
        _grads_first_row_only,
        _grads_autograd_free_mean,
    ],
)
def _check_lora_grads(candidate) -> None:
    for seed, zero_b in ((0, True), (1, False), (2, False)):
        W0, A, B, x = _factors(seed)
        if zero_b:
            B = torch.zeros_like(B)
        g = torch.Generator().manual_seed(10 + seed)
        grad_h = torch.randn(*x.shape[:-1], D, generator=g)
        a, b = A.clone().requires_grad_(True), B.clone().requires_grad_(True)
        (lora_forward(x, W0, a, b, ALPHA) * grad_h).sum().backward()  # so that ∂L/∂h = grad_h
        got = candidate(x, A, B, ALPHA, grad_h)
        if not (isinstance(got, tuple) and len(got) == 2):
            fail(f"lora_grads returned {type(got).__name__}; return a pair (grad_A, grad_B)")
        where = "at LoRA's start (B = 0)" if zero_b else f"with random A and B (seed {seed})"
        for name, got_g, ref in zip(("grad_A", "grad_B"), got, (a.grad, b.grad)):
            assert_close(
                f"{name} {where}, x of shape {tuple(x.shape)}", got_g, ref, atol=1e-4, rtol=1e-4
            )
        if zero_b and bool(torch.as_tensor(got[0]).any()):
            fail("with B = 0, grad_A must be exactly zero: ∂L/∂A = s (grad_h B)^T x")


# ----------------------------------------------------------------------------- the loss floor


def _floor_no_d(dW_true, r):
    return eckart_young_floor(dW_true, r) * dW_true.shape[0]


def _floor_not_squared(dW_true, r):
    s = torch.linalg.svdvals(dW_true.double())
    return float(s[r:].sum() / dW_true.shape[0])


def _floor_kept_part(dW_true, r):
    s = torch.linalg.svdvals(dW_true.double())
    return float((s[:r] ** 2).sum() / dW_true.shape[0])


def _floor_by_k(dW_true, r):
    return eckart_young_floor(dW_true, r) * dW_true.shape[0] / dW_true.shape[1]


def _floor_off_by_one(dW_true, r):
    s = torch.linalg.svdvals(dW_true.double())
    return float((s[r + 1 :] ** 2).sum() / dW_true.shape[0])


@register(
    "ch03.eckart_young_floor",
    reference=eckart_young_floor,
    wrong=[_floor_no_d, _floor_not_squared, _floor_kept_part, _floor_by_k, _floor_off_by_one],
)
def _check_eckart_young_floor(candidate) -> None:
    g = torch.Generator().manual_seed(5)
    for d, k, true_rank in ((12, 20, 5), (16, 9, 9), (10, 10, 3)):
        U = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64)).Q[:, :true_rank]
        V = torch.linalg.qr(torch.randn(k, k, generator=g, dtype=torch.float64)).Q[:, :true_rank]
        sv = torch.linspace(3.0, 0.5, true_rank, dtype=torch.float64)
        dW = (U * sv) @ V.T
        for r in sorted(
            {0, 1, true_rank // 2, true_rank, true_rank + 1} & set(range(min(d, k) + 1))
        ):
            what = f"eckart_young_floor(dW_true of shape ({d}, {k}) and rank {true_rank}, r={r})"
            got = float(as_number(what, candidate(dW.clone(), r)))
            want = eckart_young_floor(dW, r)
            if not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
                tail = ", ".join(f"{v:.3g}" for v in sv[r:].tolist()) or "none"
                fail(
                    f"{what} returned {got:.6g}, expected {want:.6g}: the singular values that a "
                    f"rank-{r} update must leave out are [{tail}]; the loss averages over the "
                    f"d = {d} outputs"
                )
