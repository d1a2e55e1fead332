"""The LoRA branch as one autograd node: fewer kernels and less memory traffic per training step.

Used by :class:`lorakit.lora.layers.LoRALinear` and its fused variant:

* :class:`LoRALinearFunction` (training, plain ``nn.Linear``/``Conv1D`` bases): the base matmul
  and the branch as one stacked matmul ``[x | h] [W ; s·Bᵀ]``;
* :class:`LoRAUpdate` (any base, and every call without autograd): the branch added onto the
  base layer's output.

Both are written by hand instead of as plain PyTorch ops; their docstrings say why.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import kernels


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype matmuls on ``x`` run in: the autocast dtype when autocast is on, else ``x.dtype``."""
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
    return full.as_strided((len(on), d_s, r), (step * d_s * s0 + r * s1, s0, s1),
                           full.storage_offset() + on[0] * d_s * s0)


def _place_scaled_B(dst: torch.Tensor, B: torch.Tensor, enable, scaling: float) -> torch.Tensor:
    """Write ``scaling · B`` into ``dst`` (d, ≥ R), any strides: blocks for a fused layer, zeros elsewhere.

    Two kernels: a zero fill, then one ``mul`` that casts, scales and places every block.
    """
    dst.zero_()
    if enable is None:
        return torch.mul(B, scaling, out=dst[:, :B.shape[1]])
    r = B.shape[-1]
    view = diagonal_blocks(dst, enable, r)
    if view is not None:
        return torch.mul(B, scaling, out=view)
    d_s = dst.shape[0] // len(enable)
    for j, i in enumerate(i for i, e in enumerate(enable) if e):
        torch.mul(B[j], scaling, out=dst[i * d_s:(i + 1) * d_s, j * r:(j + 1) * r])
    return dst


def block_diagonal_B(B: torch.Tensor, enable: Sequence[bool], scaling: float = 1.0,
                     dtype: torch.dtype | None = None, cols: int | None = None) -> torch.Tensor:
    """Fused-layer B factors ``(n_en, d_s, r)`` as one ``(n·d_s, n_en·r)`` block matrix, times ``scaling``.

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


def _scaled_factor(B: torch.Tensor, enable, scaling: float, dtype: torch.dtype,
                   cols: int) -> torch.Tensor:
    """``scaling · B`` in ``dtype`` as the (d, cols) matrix the branch multiplies by (zero padded)."""
    d = B.shape[0] if enable is None else len(enable) * B.shape[1]
    full = torch.empty((d, cols), dtype=dtype, device=B.device)
    _place_scaled_B(full, B, enable, scaling)
    return full


def _padded_A(A: torch.Tensor, rows: int, dtype: torch.dtype) -> torch.Tensor:
    """``A`` (R, k) in ``dtype`` with zero rows added up to ``rows``."""
    if rows == A.shape[0]:
        return A.to(dtype)
    out = torch.empty((rows, A.shape[1]), dtype=dtype, device=A.device)
    out[:A.shape[0]] = A
    out[A.shape[0]:].zero_()
    return out


def _blocks_of_grad(g_full: torch.Tensor, enable, r: int, scaling: float, like: torch.Tensor):
    """``scaling ·`` the gradient of B from that of the (d, R) matrix, in ``like``'s dtype and shape."""
    out = torch.empty(like.shape, dtype=like.dtype, device=like.device)
    if enable is None:
        return torch.mul(g_full, scaling, out=out)
    view = diagonal_blocks(g_full, enable, r)
    if view is not None:
        return torch.mul(view, scaling, out=out)
    d_s = g_full.shape[0] // len(enable)
    for j, i in enumerate(i for i, e in enumerate(enable) if e):
        torch.mul(g_full[i * d_s:(i + 1) * d_s, j * r:(j + 1) * r], scaling, out=out[j])
    return out


def _branch_factors(ctx, A, B, scaling, enable, dtype, B_full=None):
    """A and ``s·B`` in the matmuls' ``dtype``, the inner size R padded to R' = :func:`padded_rank`.

    The padding (zero rows of A, zero columns of ``B_full``) gives every matmul of the branch
    aligned operands; the extra columns of ``h`` are exactly zero and add nothing. ``B_full``,
    when given, is the (d, R') view to write ``s·B`` into (the stacked weight of
    :class:`LoRALinearFunction`); otherwise it is allocated.
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
    return _mm(gh.T, xd, ctx.A_dtype)[:ctx.R]


def _grad_B(ctx, g, h, B):
    """B's gradient ``s·(gᵀ h)``, taken out of the block matrix in B's dtype and shape."""
    return _blocks_of_grad((g.T @ h)[:, :ctx.R], ctx.enable, ctx.r, ctx.scaling, B)


def _dropout_grad(ctx, grad, mask):
    """The gradient through the branch's dropout (``grad`` unchanged when there is none)."""
    if mask is None:
        return grad
    return torch.ops.aten.native_dropout_backward(grad, mask, 1.0 / (1.0 - ctx.p))


def _no_double_backward(name: str) -> None:
    if torch.is_grad_enabled():
        raise RuntimeError(f"{name} does not support double backward (create_graph=True).")


class LoRAUpdate(torch.autograd.Function):
    """``y = out + (dropout(x) Aᵀ) (s·B_full)ᵀ`` as one autograd node (``s`` = scaling).

    Why a custom Function: the same math in plain ops records ~20 backward kernels per layer
    (casts of A and B, slice and select backward, dropout backward, a separate add) and saves
    ``dropout(x)`` *and* the mask. Here forward is: cast A to ``x``'s dtype; build ``s·B_full``
    (cast, scaling and block placement in one kernel); one ``native_dropout`` (the kernel
    ``nn.Dropout`` uses: same seed and dtype, same mask); one matmul to ``h = dropout(x) Aᵀ``
    (n, R); one ``addmm`` onto ``out``. Backward recomputes ``dropout(x)`` from the input and the
    boolean mask (``x`` is kept anyway by the base layer's matmul when both get the same tensor),
    so the branch adds only the mask and ``h`` to memory; B's gradient is taken out of the block
    matrix, scaled and cast back to B's dtype in one kernel.

    This node takes the base layer's output ``out`` as given, so it serves any base module. For
    a plain ``nn.Linear`` or ``Conv1D`` the layers use :class:`LoRALinearFunction`, which folds
    the branch into the base layer's own matmul.

    Shapes: ``out`` (n, d), ``x`` (n, k), ``A`` (R, k); ``B`` (d, R), or for a fused layer
    ``(n_en, d_s, r)`` with ``enable`` giving the slices (see :func:`block_diagonal_B`).
    Gradients flow to ``out``, ``x``, ``A`` and ``B``; double backward (``create_graph=True``)
    raises an error rather than give wrong second derivatives.
    """

    @staticmethod
    def forward(ctx, out, x, A, B, p, scaling, enable):
        A, B_full = _branch_factors(ctx, A, B, scaling, enable, x.dtype)
        xd, mask = torch.native_dropout(x, p, True) if p > 0 else (x, None)
        h = xd @ A.T
        ctx.p = p
        ctx.save_for_backward(x, mask, h, A, B_full, B)
        return torch.addmm(out, h, B_full.T)

    @staticmethod
    def backward(ctx, g):
        _no_double_backward("LoRAUpdate")
        x, mask, h, A, B_full, B = ctx.saved_tensors
        need_x, need_A, need_B = ctx.needs_input_grad[1:4]
        gx = gA = gB = None
        if need_x or need_A:
            gh = g @ B_full  # (n, R'): gradient w.r.t. h (B_full carries the scaling)
            if need_x:
                gx = _dropout_grad(ctx, gh @ A, mask)
            if need_A:  # dropout(x) recomputed from x and the mask
                gA = _grad_A(ctx, gh, _dropout_grad(ctx, x, mask))
        if need_B:
            gB = _grad_B(ctx, g, h, B)
        return g, gx, gA, gB, None, None, None


class LoRALinearFunction(torch.autograd.Function):
    """A frozen linear map and its LoRA branch as one node and one matmul (``s`` = scaling).

    ``W x + s·B A dropout(x)`` is a single product with a stacked input and a stacked weight::

        y = [x | h] [W ; s·Bᵀ] + b,    h = dropout(x) Aᵀ    (rows: n, inner size k + R')

    so the base layer's matmul also applies the update: no second matmul over the (n, d) output,
    no copy of it, no separate add; the price is building the stacked input (n, k + R'), which
    is freed after the matmul. R' is R padded to :func:`padded_rank` (aligned matmuls; the
    padding is exactly zero).

    Backward keeps ``dropout(x)`` (for A's gradient), ``h`` (for B's) and the dropout's
    decisions, not ``x``: the base weight is frozen, so its matmul needs no input of forward.
    Where :func:`lorakit.lora.kernels.usable` says so (a CUDA bf16/fp16 input, Triton installed,
    by default only while a CUDA graph is captured) the decisions are a seed for the kernels of
    :mod:`lorakit.lora.kernels`: in forward one pass writes ``x`` into the stacked input and
    ``dropout(x)``; in backward one matmul ``g [W ; s·Bᵀ]ᵀ`` gives the stacked input's gradient
    ``[g W | gh]`` (reading ``g`` once), and one pass adds the branch's share
    ``dropout_backward(gh A)`` onto its first part and sums A's gradient: no mask stored, no
    (n, k) intermediate. Otherwise the decisions are ``native_dropout``'s boolean mask, and the
    base's input gradient is added onto the branch's in the matmul epilogue (``addmm_``).

    ``weight`` is stored (k, d) when ``in_by_out`` (transformers' ``Conv1D``), else (d, k)
    (``nn.Linear``); it and ``bias`` are cast to ``x``'s dtype as autocast would. Gradients flow
    to every tensor that needs one (a trainable weight or bias too: then ``x`` is kept as well).
    Numerically it is the base layer's matmul plus :class:`LoRAUpdate` (up to rounding order and,
    on the Triton path, which elements dropout drops).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, A, B, p, scaling, enable, in_by_out):
        (n, k), cdt = x.shape, x.dtype
        Rp = padded_rank(A.shape[0])
        d = weight.shape[1] if in_by_out else weight.shape[0]
        # the stacked weight, kept as its (d, k + R') "out x in" view whatever the storage order
        storage = torch.empty((k + Rp, d) if in_by_out else (d, k + Rp), dtype=cdt,
                              device=x.device)
        w_dk = storage.T if in_by_out else storage
        w_dk[:, :k] = weight.T if in_by_out else weight
        # s·B goes straight into the stacked weight
        A, _ = _branch_factors(ctx, A, B, scaling, enable, cdt, B_full=w_dk[:, k:])
        mask = seed = None
        if p > 0 and kernels.usable(x, Rp):  # x copied into [x | h] and dropped in one pass
            xh = torch.empty((n, k + Rp), dtype=cdt, device=x.device)
            seed = kernels.new_seed(x.device)
            xd = kernels.dropout_and_copy(x, xh, p, seed)
            h = xd @ A.T  # (n, R')
            xh[:, k:] = h
        else:
            xd, mask = torch.native_dropout(x, p, True) if p > 0 else (x, None)
            h = xd @ A.T
            xh = torch.cat([x, h], dim=1)  # (n, k + R')
        y = xh @ w_dk.T if bias is None else torch.addmm(bias.to(cdt), xh, w_dk.T)
        keep_x = x if ctx.needs_input_grad[1] else None  # only a trainable weight needs x
        ctx.save_for_backward(xd, h, mask, seed, A, w_dk, B, keep_x)
        ctx.p, ctx.in_by_out = p, in_by_out
        return y

    @staticmethod
    def backward(ctx, g):
        _no_double_backward("LoRALinearFunction")
        xd, h, mask, seed, A, w_dk, B, x = ctx.saved_tensors
        need_x, need_w, need_b, need_A, need_B = ctx.needs_input_grad[:5]
        k = xd.shape[1]
        W, B_full = w_dk[:, :k], w_dk[:, k:]  # the stacked weight's parts: W and s·B_full
        gx = gw = gb = gA = gB = None
        if need_x and seed is not None:
            # the gradient of the stacked input [x | h], i.e. [g W | gh], in one matmul that
            # reads g once; then one pass adds the branch's share to x's and sums A's
            gxh = g @ w_dk
            gx, gA = kernels.branch_grads(gxh[:, :k], gxh[:, k:], A, ctx.p, seed,
                                          xd if need_A else None)
            if gA is not None:
                gA = gA[:ctx.R].to(ctx.A_dtype)
        elif need_x or need_A:
            gh = g @ B_full  # (n, R'): gradient w.r.t. h
            if need_x:  # the branch's gradient, then the base's added in the matmul epilogue
                gx = _dropout_grad(ctx, gh @ A, mask).addmm_(g, W)
            if need_A:
                gA = _grad_A(ctx, gh, xd)
        if need_B:
            gB = _grad_B(ctx, g, h, B)
        if need_w:
            gw_kd = x.T @ g
            gw = gw_kd if ctx.in_by_out else gw_kd.T
        if need_b:
            gb = g.sum(0)
        return gx, gw, gb, gA, gB, None, None, None, None


def lora_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                in_by_out: bool, A: torch.Tensor, B: torch.Tensor, p: float, scaling: float,
                enable: Sequence[bool] | None = None) -> torch.Tensor:
    """``x W + b + scaling · B A dropout_p(x)`` for ``x`` of any leading shape (:class:`LoRALinearFunction`).

    ``x`` (..., k) is already in the compute dtype; returns (..., d).
    """
    d = weight.shape[1] if in_by_out else weight.shape[0]
    y = LoRALinearFunction.apply(x.reshape(-1, x.shape[-1]), weight, bias, A, B, float(p),
                                 float(scaling), None if enable is None else tuple(enable),
                                 bool(in_by_out))
    return y.view(*x.shape[:-1], d)


def lora_update(out: torch.Tensor, x: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                p: float, scaling: float, enable: Sequence[bool] | None = None) -> torch.Tensor:
    """``out + scaling · B A dropout_p(x)`` for inputs of any leading shape (see :class:`LoRAUpdate`).

    ``out`` (..., d) is the base layer's output, ``x`` (..., k) its input, already in the compute
    dtype; ``p`` is the dropout probability (0 in eval mode). Returns (..., d).
    """
    y = LoRAUpdate.apply(out.reshape(-1, out.shape[-1]), x.reshape(-1, x.shape[-1]),
                         A, B, float(p), float(scaling), None if enable is None else tuple(enable))
    return y.view(out.shape)
