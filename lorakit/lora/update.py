"""The LoRA branch as one autograd node: fewer kernels and less memory per training step.

Used by :class:`lorakit.lora.layers.LoRALinear` and its fused variant; see :class:`LoRAUpdate`
for why the branch is written by hand instead of as plain PyTorch ops.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype matmuls on ``x`` run in: the autocast dtype when autocast is on, else ``x.dtype``."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


def block_diagonal_B(B: torch.Tensor, enable: Sequence[bool]) -> torch.Tensor:
    """Fused-layer B factors ``(n_en, d_s, r)`` as one ``(n·d_s, n_en·r)`` block matrix.

    Slice ``i`` of the output (the ``j``-th enabled one) reads only columns ``j·r:(j+1)·r``, so
    ``h @ B_full.T`` with ``h = [A_q x, A_v x]`` gives ``[B_q A_q x, 0, B_v A_v x]`` in one matmul;
    a disabled slice is a block of zero rows (k stays untouched).
    """
    parts, j = [], 0
    for on in enable:
        if on:
            parts.append(B[j])
            j += 1
        else:
            parts.append(B.new_empty(B.shape[1], 0))
    return torch.block_diag(*parts)


class LoRAUpdate(torch.autograd.Function):
    """``y = out + s · (dropout(x) Aᵀ) B_fullᵀ`` as one autograd node (``s`` = scaling).

    Why a custom Function: the same math in plain ops records ~20 backward kernels per layer
    (casts of A and B, slice and select backward, dropout backward, a separate add) and saves
    ``dropout(x)`` *and* the mask. Here forward is: cast A and B to ``x``'s dtype, one
    ``native_dropout`` (the kernel ``nn.Dropout`` uses: same seed and dtype, same mask),
    one matmul to ``h = dropout(x) Aᵀ`` (n, R), one ``addmm`` onto ``out``. Backward recomputes
    ``dropout(x)`` from the input and the boolean mask (``x`` is kept anyway by the base layer's
    matmul when both get the same tensor), so the branch adds only the mask and ``h`` to memory.

    Shapes: ``out`` (n, d), ``x`` (n, k), ``A`` (R, k); ``B`` (d, R), or for a fused layer
    ``(n_en, d_s, r)`` with ``enable`` giving the slices (see :func:`block_diagonal_B`).
    Gradients flow to ``out``, ``x``, ``A`` and ``B``; double backward (``create_graph=True``)
    raises an error rather than give wrong second derivatives.
    """

    @staticmethod
    def forward(ctx, out, x, A, B, p, scaling, enable):
        cdt = x.dtype
        A = A.to(cdt)
        B_full = block_diagonal_B(B.to(cdt), enable) if enable is not None else B.to(cdt)
        xd, mask = torch.native_dropout(x, p, True) if p > 0 else (x, None)
        h = xd @ A.T  # (n, R)
        ctx.save_for_backward(x, mask, h, A, B_full)
        ctx.p, ctx.scaling, ctx.enable, ctx.r = p, scaling, enable, B.shape[-1]
        return torch.addmm(out, h, B_full.T, alpha=scaling)

    @staticmethod
    def backward(ctx, g):
        if torch.is_grad_enabled():
            raise RuntimeError("LoRAUpdate does not support double backward (create_graph=True).")
        x, mask, h, A, B_full = ctx.saved_tensors
        need_x, need_A, need_B = ctx.needs_input_grad[1:4]
        gx = gA = gB = None
        if need_x or need_A:
            gh = (g @ B_full).mul_(ctx.scaling)  # (n, R): gradient w.r.t. h
            keep = 1.0 / (1.0 - ctx.p)
            if need_A:
                xd = x if mask is None else torch.ops.aten.native_dropout_backward(x, mask, keep)
                gA = gh.T @ xd
            if need_x:
                gx = gh @ A
                if mask is not None:
                    gx = torch.ops.aten.native_dropout_backward(gx, mask, keep)
        if need_B:
            gB_full = (g.T @ h).mul_(ctx.scaling)  # (d, R)
            if ctx.enable is None:
                gB = gB_full
            else:  # the diagonal blocks, one per enabled slice
                d_s, r = B_full.shape[0] // len(ctx.enable), ctx.r
                on = [i for i, e in enumerate(ctx.enable) if e]
                gB = torch.stack([gB_full[i * d_s:(i + 1) * d_s, j * r:(j + 1) * r]
                                  for j, i in enumerate(on)])
        return g, gx, gA, gB, None, None, None


def lora_update(out: torch.Tensor, x: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                p: float, scaling: float, enable: Sequence[bool] | None = None) -> torch.Tensor:
    """``out + scaling · B A dropout_p(x)`` for inputs of any leading shape (see :class:`LoRAUpdate`).

    ``out`` (..., d) is the base layer's output, ``x`` (..., k) its input, already in the compute
    dtype; ``p`` is the dropout probability (0 in eval mode). Returns (..., d).
    """
    y = LoRAUpdate.apply(out.reshape(-1, out.shape[-1]), x.reshape(-1, x.shape[-1]),
                         A, B, float(p), float(scaling), None if enable is None else tuple(enable))
    return y.view(out.shape)
