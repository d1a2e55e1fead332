"""Block layout helpers of the fused LoRA path: the factors as the matrices its matmuls take.

The fused Functions (:mod:`lorakit.lora.fast.function`) multiply by ``s·B`` as one block matrix
(a fused q/k/v projection's slices side by side, zero blocks for disabled slices), by A padded
with zero rows to an aligned inner size, and take B's gradient back out of the block matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype matmuls on ``x`` run in: the autocast dtype when autocast is on, else x's."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


RANK_MULTIPLE = 8  # the branch's inner size R is padded to this (aligned, faster GPU matmuls)


def padded_rank(R: int) -> int:
    """``R`` rounded up to a multiple of :data:`RANK_MULTIPLE` (q,k,v at r = 4: 12 -> 16)."""
    return -(-R // RANK_MULTIPLE) * RANK_MULTIPLE


def diagonal_blocks(full: torch.Tensor, enable: Sequence[bool], r: int) -> torch.Tensor | None:
    """The enabled slices' blocks of a block matrix ``full`` (n·d_s, ≥ n_en·r) as one strided view.

    ``view[j]`` is ``full[i·d_s:(i+1)·d_s, j·r:(j+1)·r]`` for the ``j``-th enabled slice ``i``.
    One view (so one kernel reads or writes every block) exists when the enabled slices are
    evenly spaced, which is every choice for q, k, v; otherwise ``None``. ``full`` may be a view
    (any strides).
    """
    on = [i for i, e in enumerate(enable) if e]
    step = on[1] - on[0] if len(on) > 1 else 0
    if any(b - a != step for a, b in zip(on, on[1:])):
        return None
    d_s = full.shape[0] // len(enable)
    s0, s1 = full.stride()
    return full.as_strided(
        (len(on), d_s, r),
        (step * d_s * s0 + r * s1, s0, s1),
        full.storage_offset() + on[0] * d_s * s0,
    )


def _place_scaled_B(dst: torch.Tensor, B: torch.Tensor, enable, scaling: float) -> torch.Tensor:
    """Write ``scaling · B`` into ``dst`` (d, ≥ R), any strides: blocks for a fused layer, zeros
    elsewhere.

    Two kernels: a zero fill, then one ``mul`` that casts, scales and places every block.
    """
    dst.zero_()
    if enable is None:
        return torch.mul(B, scaling, out=dst[:, : B.shape[1]])
    r = B.shape[-1]
    view = diagonal_blocks(dst, enable, r)
    if view is not None:
        return torch.mul(B, scaling, out=view)
    d_s = dst.shape[0] // len(enable)
    for j, i in enumerate(i for i, e in enumerate(enable) if e):
        torch.mul(B[j], scaling, out=dst[i * d_s : (i + 1) * d_s, j * r : (j + 1) * r])
    return dst


def block_diagonal_B(
    B: torch.Tensor,
    enable: Sequence[bool],
    scaling: float = 1.0,
    dtype: torch.dtype | None = None,
    cols: int | None = None,
) -> torch.Tensor:
    """Fused-layer B factors ``(n_en, d_s, r)`` as one ``(n·d_s, n_en·r)`` block matrix, times
    ``scaling``.

    Slice ``i`` of the output (the ``j``-th enabled one) reads only columns ``j·r:(j+1)·r``, so
    ``h @ B_full.T`` with ``h = [A_q x, A_v x]`` gives ``[B_q A_q x, 0, B_v A_v x]`` in one matmul;
    a disabled slice is a block of zero rows (k stays untouched). ``cols`` (≥ n_en·r) adds zero
    columns. The result has no gradient history (the LoRA nodes compute B's gradient themselves).
    """
    n_en, d_s, r = B.shape
    with torch.no_grad():
        full = B.new_empty((len(enable) * d_s, cols or n_en * r), dtype=dtype or B.dtype)
        _place_scaled_B(full, B, enable, scaling)
    return full


def _scaled_factor(
    B: torch.Tensor, enable, scaling: float, dtype: torch.dtype, cols: int
) -> torch.Tensor:
    """``scaling · B`` in ``dtype`` as the (d, cols) matrix the branch multiplies by (0-padded)."""
    d = B.shape[0] if enable is None else len(enable) * B.shape[1]
    full = torch.empty((d, cols), dtype=dtype, device=B.device)
    _place_scaled_B(full, B, enable, scaling)
    return full


def _padded_A(A: torch.Tensor, rows: int, dtype: torch.dtype) -> torch.Tensor:
    """``A`` (R, k) in ``dtype`` with zero rows added up to ``rows``."""
    if rows == A.shape[0]:
        return A.to(dtype)
    out = torch.empty((rows, A.shape[1]), dtype=dtype, device=A.device)
    out[: A.shape[0]] = A
    out[A.shape[0] :].zero_()
    return out


def _blocks_of_grad(g_full: torch.Tensor, enable, r: int, scaling: float, like: torch.Tensor):
    """``scaling ·`` the gradient of B from that of the (d, R) matrix, in ``like``'s dtype and
    shape."""
    out = torch.empty(like.shape, dtype=like.dtype, device=like.device)
    if enable is None:
        return torch.mul(g_full, scaling, out=out)
    view = diagonal_blocks(g_full, enable, r)
    if view is not None:
        return torch.mul(view, scaling, out=out)
    d_s = g_full.shape[0] // len(enable)
    for j, i in enumerate(i for i, e in enumerate(enable) if e):
        torch.mul(g_full[i * d_s : (i + 1) * d_s, j * r : (j + 1) * r], scaling, out=out[j])
    return out


def _branch_factors(ctx, A, B, scaling, enable, dtype, B_full=None):
    """A and ``s·B`` in the matmuls' ``dtype``, the inner size R padded to R' = :func:`padded_rank`.

    The padding (zero rows of A, zero columns of ``B_full``) gives every matmul of the branch
    aligned operands; the extra columns of ``h`` are exactly zero and add nothing. ``B_full``,
    when given, is the (d, R') view to write ``s·B`` into (the stacked weight of
    :class:`StackedMatmul`); otherwise it is allocated.
    """
    R, ctx.A_dtype = A.shape[0], A.dtype
    Rp = padded_rank(R)
    A = _padded_A(A, Rp, dtype)
    if B_full is None:
        B_full = _scaled_factor(B, enable, scaling, dtype, Rp)  # (d, R'), scaling folded in
    else:
        _place_scaled_B(B_full, B, enable, scaling)
    ctx.scaling, ctx.enable, ctx.r, ctx.R = scaling, enable, B.shape[-1], R
    return A, B_full


_MM_OUT_DTYPE = [True]  # whether torch.mm takes out_dtype here (CUDA, torch >= 2.8)


def _mm(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``a @ b`` with the result in ``dtype``: straight from the matmul on CUDA (an fp32 result
    of bf16 operands needs no separate cast kernel), else cast afterwards."""
    if a.is_cuda and dtype != a.dtype and _MM_OUT_DTYPE[0]:
        try:
            return torch.mm(a, b, out_dtype=dtype)
        except (TypeError, RuntimeError):
            _MM_OUT_DTYPE[0] = False
    return (a @ b).to(dtype)


def _grad_A(ctx, gh, xd):
    """A's gradient ``ghᵀ dropout(x)``, in A's dtype (R, k)."""
    return _mm(gh.T, xd, ctx.A_dtype)[: ctx.R]


def _grad_B(ctx, g, h, B):
    """B's gradient ``s·(gᵀ h)``, taken out of the block matrix in B's dtype and shape."""
    return _blocks_of_grad((g.T @ h)[:, : ctx.R], ctx.enable, ctx.r, ctx.scaling, B)


def _dropout_grad(ctx, grad, mask):
    """The gradient through the branch's dropout (``grad`` unchanged when there is none)."""
    if mask is None:
        return grad
    return torch.ops.aten.native_dropout_backward(grad, mask, 1.0 / (1.0 - ctx.p))


def _no_double_backward(name: str) -> None:
    if torch.is_grad_enabled():
        raise RuntimeError(f"{name} does not support double backward (create_graph=True).")
