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


def _branch_forward(ctx, x, A, B, p, scaling, enable, B_full=None):
    """The branch's forward pieces: ``h = dropout(x) Aᵀ`` (n, R'), the mask, A and ``s·B_full``.

    The inner size R is padded to R' = :func:`padded_rank` with zero rows of A and zero columns
    of B_full, so every matmul of the branch has aligned operands (the extra columns of ``h`` are
    exactly zero and add nothing). ``B_full``, when given, is the (d, R') view to write ``s·B``
    into (the stacked weight of :class:`LoRALinearFunction`); otherwise it is allocated.
    """
    cdt, R = x.dtype, A.shape[0]
    Rp = padded_rank(R)
    A = _padded_A(A, Rp, cdt)
    if B_full is None:
        B_full = _scaled_factor(B, enable, scaling, cdt, Rp)  # (d, R'), scaling folded in
    else:
        _place_scaled_B(B_full, B, enable, scaling)
    xd, mask = torch.native_dropout(x, p, True) if p > 0 else (x, None)
    ctx.p, ctx.scaling, ctx.enable, ctx.r, ctx.R = p, scaling, enable, B.shape[-1], R
    return xd @ A.T, mask, A, B_full


def _branch_backward(ctx, g, x, mask, h, A, B_full, B, need_x, need_A, need_B):
    """Gradients of the branch for x, A and B (x's is the branch's share only)."""
    gx = gA = gB = None
    if need_x or need_A:
        gh = g @ B_full  # (n, R'): gradient w.r.t. h (B_full carries the scaling)
        keep = 1.0 / (1.0 - ctx.p)
        if need_A:
            xd = x if mask is None else torch.ops.aten.native_dropout_backward(x, mask, keep)
            gA = (gh.T @ xd)[:ctx.R]
        if need_x:
            gx = gh @ A
            if mask is not None:
                gx = torch.ops.aten.native_dropout_backward(gx, mask, keep)
    if need_B:
        gB = _blocks_of_grad((g.T @ h)[:, :ctx.R], ctx.enable, ctx.r, ctx.scaling, B)
    return gx, gA, gB


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
        h, mask, A, B_full = _branch_forward(ctx, x, A, B, p, scaling, enable)
        ctx.save_for_backward(x, mask, h, A, B_full, B)
        return torch.addmm(out, h, B_full.T)

    @staticmethod
    def backward(ctx, g):
        _no_double_backward("LoRAUpdate")
        x, mask, h, A, B_full, B = ctx.saved_tensors
        gx, gA, gB = _branch_backward(ctx, g, x, mask, h, A, B_full, B, *ctx.needs_input_grad[1:4])
        return g, gx, gA, gB, None, None, None


class LoRALinearFunction(torch.autograd.Function):
    """A frozen linear map and its LoRA branch as one node and one matmul (``s`` = scaling).

    ``W x + s·B A dropout(x)`` is a single product with a stacked input and a stacked weight::

        y = [x | h] [W ; s·Bᵀ] + b,    h = dropout(x) Aᵀ    (rows: n, inner size k + R')

    so the base layer's matmul also applies the update: no second matmul over the (n, d) output,
    no copy of it, no separate add; the price is one concatenation of ``x`` (n, k) with ``h``
    (transient: backward keeps ``x`` and ``h``, not the stack), far less traffic. In backward the base's input gradient is accumulated in place onto the
    branch's (``addmm_``: the sum happens in the matmul's epilogue). R' is R padded to
    :func:`padded_rank` (aligned matmuls; the padding is exactly zero).

    ``weight`` is stored (k, d) when ``in_by_out`` (transformers' ``Conv1D``), else (d, k)
    (``nn.Linear``); it and ``bias`` are cast to ``x``'s dtype as autocast would. Gradients flow
    to every tensor that needs one (a trainable bias with ``LoRAConfig(bias=...)`` too).
    Numerically it is the base layer's matmul plus :class:`LoRAUpdate` (up to rounding order).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, A, B, p, scaling, enable, in_by_out):
        k, cdt = x.shape[1], x.dtype
        Rp = padded_rank(A.shape[0])
        d = weight.shape[1] if in_by_out else weight.shape[0]
        # the stacked weight, kept as its (d, k + R') "out x in" view whatever the storage order
        storage = torch.empty((k + Rp, d) if in_by_out else (d, k + Rp), dtype=cdt,
                              device=x.device)
        w_dk = storage.T if in_by_out else storage
        w_dk[:, :k] = weight.T if in_by_out else weight
        # the stacked input [x | h]; s·B goes straight into the stacked weight
        h, mask, A, _ = _branch_forward(ctx, x, A, B, p, scaling, enable, B_full=w_dk[:, k:])
        xh = torch.cat([x, h], dim=1)  # (n, k + R'), freed after the matmul
        y = xh @ w_dk.T if bias is None else torch.addmm(bias.to(cdt), xh, w_dk.T)
        # x and h are kept apart: contiguous operands for backward's elementwise kernels
        ctx.save_for_backward(x, h, mask, A, w_dk, B)
        ctx.in_by_out = in_by_out
        return y

    @staticmethod
    def backward(ctx, g):
        _no_double_backward("LoRALinearFunction")
        x, h, mask, A, w_dk, B = ctx.saved_tensors
        need_x, need_w, need_b, need_A, need_B = ctx.needs_input_grad[:5]
        k = x.shape[1]
        # the stacked weight's last R' columns are s·B_full: the branch's gradients as usual
        gx, gA, gB = _branch_backward(ctx, g, x, mask, h, A, w_dk[:, k:], B, need_x, need_A,
                                      need_B)
        if need_x:
            gx.addmm_(g, w_dk[:, :k])  # + the base's input gradient, in the epilogue
        gw = gb = None
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
