"""The fused LoRA path: base layer and branch as hand-written autograd nodes.

:func:`fused_forward` is what a LoRA layer runs with ``fast_path`` on
(:func:`lorakit.lora.fast.set_fast_path`):

* :class:`StackedMatmul` while autograd records, for a plain ``nn.Linear``/``Conv1D`` base:
  the base matmul and the branch as one stacked matmul ``[x | h] [W ; s·Bᵀ]``;
* :class:`BranchUpdate` otherwise (a base with hooks or its own forward, and calls without
  autograd): the branch added onto the base layer's output.

Both compute the layer's formula ``W0 x + s·B A dropout(x)`` (``s = α/r``, paper §4.1); their
docstrings say what each does differently from the plain ops and why.
"""

from __future__ import annotations

import torch
from torch import nn

from ..kinds import is_conv1d
from . import kernels
from .blocks import (
    _branch_factors,
    _dropout_grad,
    _grad_A,
    _grad_B,
    _no_double_backward,
    compute_dtype,
    padded_rank,
)


class BranchUpdate(torch.autograd.Function):
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
    a plain ``nn.Linear`` or ``Conv1D`` under autograd, :func:`fused_forward` uses
    :class:`StackedMatmul` instead, which folds the branch into the base layer's own matmul.

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
        _no_double_backward("BranchUpdate")
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


class StackedMatmul(torch.autograd.Function):
    """A frozen linear map and its LoRA branch as one node and one matmul (``s`` = scaling).

    ``W x + s·B A dropout(x)`` is a single product with a stacked input and a stacked weight::

        y = [x | h] [W ; s·Bᵀ] + b,    h = dropout(x) Aᵀ    (rows: n, inner size k + R')

    so the base layer's matmul also applies the update: no second matmul over the (n, d) output,
    no copy of it, no separate add; the price is building the stacked input (n, k + R'), which
    is freed after the matmul. R' is R padded to :func:`padded_rank` (aligned matmuls; the
    padding is exactly zero).

    Backward keeps ``dropout(x)`` (for A's gradient), ``h`` (for B's) and the dropout's
    decisions, not ``x``: the base weight is frozen, so its matmul needs no input of forward.
    Where :func:`~lorakit.lora.fast.kernels.usable` says so (a CUDA bf16/fp16 input, Triton
    installed, by default only while a CUDA graph is captured) the decisions are a seed for the
    kernels of :mod:`lorakit.lora.fast.kernels`: in forward one pass writes ``x`` into the
    stacked input and ``dropout(x)``; in backward one matmul ``g [W ; s·Bᵀ]ᵀ`` gives the stacked
    input's gradient ``[g W | gh]`` (reading ``g`` once), and one pass adds the branch's share
    ``dropout_backward(gh A)`` onto its first part and sums A's gradient: no mask stored, no
    (n, k) intermediate. Otherwise the decisions are ``native_dropout``'s boolean mask, and the
    base's input gradient is added onto the branch's in the matmul epilogue (``addmm_``).

    ``weight`` is stored (k, d) when ``fan_in_fan_out`` (transformers' ``Conv1D``), else (d, k)
    (``nn.Linear``); it and ``bias`` are cast to ``x``'s dtype as autocast would. Gradients flow
    to every tensor that needs one (a trainable weight or bias too: then ``x`` is kept as well).
    Numerically it is the base layer's matmul plus :class:`BranchUpdate` (up to rounding order and,
    on the Triton path, which elements dropout drops).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, A, B, p, scaling, enable, fan_in_fan_out):
        (n, k), cdt = x.shape, x.dtype
        Rp = padded_rank(A.shape[0])
        d = weight.shape[1] if fan_in_fan_out else weight.shape[0]
        # the stacked weight, kept as its (d, k + R') "out x in" view whatever the storage order
        storage = torch.empty(
            (k + Rp, d) if fan_in_fan_out else (d, k + Rp), dtype=cdt, device=x.device
        )
        w_dk = storage.T if fan_in_fan_out else storage
        w_dk[:, :k] = weight.T if fan_in_fan_out else weight
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
        ctx.p, ctx.fan_in_fan_out = p, fan_in_fan_out
        return y

    @staticmethod
    def backward(ctx, g):
        _no_double_backward("StackedMatmul")
        xd, h, mask, seed, A, w_dk, B, x = ctx.saved_tensors
        need_x, need_w, need_b, need_A, need_B = ctx.needs_input_grad[:5]
        k = xd.shape[1]
        W, B_full = w_dk[:, :k], w_dk[:, k:]  # the stacked weight's parts: W and s·B_full
        gx = gw = gb = gA = gB = None
        if need_x and seed is not None:
            # the gradient of the stacked input [x | h], i.e. [g W | gh], in one matmul that
            # reads g once; then one pass adds the branch's share to x's and sums A's
            gxh = g @ w_dk
            gx, gA = kernels.branch_grads(
                gxh[:, :k], gxh[:, k:], A, ctx.p, seed, xd if need_A else None
            )
            if gA is not None:
                gA = gA[: ctx.R].to(ctx.A_dtype)
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
            gw = gw_kd if ctx.fan_in_fan_out else gw_kd.T
        if need_b:
            gb = g.sum(0)
        return gx, gw, gb, gA, gB, None, None, None, None


def _plain_matmul(base: nn.Module) -> bool:
    """Whether ``base`` is exactly ``nn.Linear`` or transformers' ``Conv1D`` with no hooks, so that
    its forward is the matmul :class:`StackedMatmul` runs itself."""
    plain = type(base) is nn.Linear or is_conv1d(base)
    return plain and not base._forward_hooks and not base._forward_pre_hooks


def fused_forward(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The forward of an unmerged :class:`~lorakit.lora.layers.LoRALinear` on the fused path.

    ``x`` (..., k) is cast once to the compute dtype (the autocast dtype, if on): base and branch
    share the cast, and the Functions, which autocast does not see into, get matching dtypes.
    Returns (..., d), the same as the layer's formula up to rounding order.

    While ``torch.compile`` traces the model this returns the layer's formula instead: the
    compiler fuses those plain ops itself, whereas the hand-written nodes would break its graph
    at every layer, and the frames it resumes after each break recompile layer by layer (their
    guards see each layer's own state) until dynamo's recompile limit sends it back to eager.
    """
    if torch.compiler.is_compiling():
        return layer.base(x) + layer.lora_delta(x)
    x = x.to(compute_dtype(x))
    drop = layer.lora_dropout
    p = drop.p if isinstance(drop, nn.Dropout) and drop.training else 0.0
    enable = getattr(layer, "enable", None)  # the enabled slices of a fused q/k/v layer
    branch = (layer.lora_A, layer.lora_B, float(p), float(layer.scaling), enable)
    rows, base = x.reshape(-1, x.shape[-1]), layer.base  # the Functions take (n, k) inputs
    if torch.is_grad_enabled() and _plain_matmul(base):
        y = StackedMatmul.apply(rows, base.weight, base.bias, *branch, layer.fan_in_fan_out)
    else:
        out = base(x)
        y = BranchUpdate.apply(out.reshape(-1, out.shape[-1]), rows, *branch)
    return y.view(*x.shape[:-1], y.shape[-1])
