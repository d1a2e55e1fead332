"""The LoRA branch's dropout and small matmuls fused into two Triton kernels (CUDA, bf16/fp16).

What the kernels replace. With dropout, the branch of :class:`~lorakit.lora.update.LoRALinearFunction`
runs, per layer and step, a dropout kernel that writes ``dropout(x)`` and a boolean mask, a matmul
for ``h = dropout(x) Aᵀ``, a concatenation ``[x | h]``; and in backward two dropout-backward
kernels, a matmul for A's gradient and one for x's. Each reads or writes an (n, k) tensor, and the
mask (n·k bytes) is kept from forward to backward. Here:

* :func:`branch_forward` reads ``x`` once and writes the stacked input ``[x | h]`` directly: the
  dropout mask is drawn inside the kernel (``tl.rand``, a counter-based generator) and never stored;
* :func:`branch_backward` redraws the same mask from the same seed and offsets, and computes A's
  gradient (``ghᵀ dropout(x)``, summed over row blocks in fp32) and the branch's share of x's
  gradient (``dropout_backward(gh A)``) in one pass over ``x``.

The seed is one int64 drawn on the device from PyTorch's generator for every forward call, so
``torch.manual_seed`` makes runs repeatable and CUDA-graph replays draw fresh masks. The masks are
not the ones ``nn.Dropout`` would draw (another generator); their distribution is the same: each
element is kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``.

Without Triton or CUDA (or for fp32 inputs) :func:`usable` is false and the layers use PyTorch ops.
``TRITON_INTERPRET=1`` runs the kernels on the CPU for testing.
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the PyTorch path is used
    triton = None

FWD_BLOCK_M, BWD_BLOCK_M, BLOCK_K = 32, 64, 64
DTYPES = (torch.bfloat16, torch.float16)


def usable(x: torch.Tensor) -> bool:
    """Whether the fused kernels can run on ``x`` (n, k): Triton, CUDA (or the interpreter), bf16/fp16."""
    if triton is None or x.dtype not in DTYPES or x.dim() != 2:
        return False
    if not (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
        return False
    return x.shape[0] * x.shape[1] < 2**31  # offsets of the random stream are int32


def rank_width(R: int) -> int:
    """The width of ``h`` on the fused path: R rounded up to a power of two, at least 16 (``tl.dot``)."""
    return max(16, 1 << (R - 1).bit_length())


if triton is not None:

    @triton.jit
    def _forward_kernel(X, XH, A, SEED, n, R, stride_x, stride_xh, stride_a, p, scale,
                        k: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr, RP: tl.constexpr,
                        DROP: tl.constexpr):
        """One block of rows: copy x into [x | h], accumulate h = dropout(x) Aᵀ over k."""
        rows = tl.program_id(0) * BM + tl.arange(0, BM)
        rows_in = rows < n
        rr = tl.arange(0, RP)
        acc = tl.zeros((BM, RP), dtype=tl.float32)
        seed = 0
        if DROP:
            seed = tl.load(SEED)
        for k0 in range(0, k, BK):
            cols = k0 + tl.arange(0, BK)
            cols_in = cols < k
            inside = rows_in[:, None] & cols_in[None, :]
            x = tl.load(X + rows[:, None] * stride_x + cols[None, :], mask=inside, other=0.0)
            tl.store(XH + rows[:, None] * stride_xh + cols[None, :], x, mask=inside)
            if DROP:
                keep = tl.rand(seed, rows[:, None] * k + cols[None, :]) >= p
                x = tl.where(keep, x * scale, 0.0).to(XH.dtype.element_ty)
            a = tl.load(A + rr[:, None] * stride_a + cols[None, :],
                        mask=(rr[:, None] < R) & cols_in[None, :], other=0.0)
            acc += tl.dot(x, tl.trans(a.to(XH.dtype.element_ty)))
        tl.store(XH + rows[:, None] * stride_xh + (k + rr)[None, :],
                 acc.to(XH.dtype.element_ty), mask=rows_in[:, None])

    @triton.jit
    def _backward_kernel(XH, GH, A, SEED, GX, PART, n, R, stride_xh, stride_gh, stride_a,
                         stride_gx, p, scale, k: tl.constexpr, BM: tl.constexpr,
                         BK: tl.constexpr, RP: tl.constexpr, DROP: tl.constexpr,
                         NEED_GX: tl.constexpr):
        """One (row block, column block): A's partial gradient and x's branch gradient."""
        pid_m = tl.program_id(0)
        rows = pid_m * BM + tl.arange(0, BM)
        cols = tl.program_id(1) * BK + tl.arange(0, BK)
        rows_in, cols_in = rows < n, cols < k
        inside = rows_in[:, None] & cols_in[None, :]
        rr = tl.arange(0, RP)
        gh = tl.load(GH + rows[:, None] * stride_gh + rr[None, :], mask=rows_in[:, None], other=0.0)
        x = tl.load(XH + rows[:, None] * stride_xh + cols[None, :], mask=inside, other=0.0)
        keep = x == x  # placeholder when there is no dropout
        if DROP:
            keep = tl.rand(tl.load(SEED), rows[:, None] * k + cols[None, :]) >= p
            x = tl.where(keep, x * scale, 0.0).to(GH.dtype.element_ty)
        part = tl.dot(tl.trans(gh), x)  # (RP, BK): this row block's share of ghᵀ dropout(x)
        tl.store(PART + pid_m * RP * k + rr[:, None] * k + cols[None, :], part,
                 mask=cols_in[None, :])
        if NEED_GX:
            a = tl.load(A + rr[:, None] * stride_a + cols[None, :],
                        mask=(rr[:, None] < R) & cols_in[None, :], other=0.0)
            gx = tl.dot(gh, a.to(GH.dtype.element_ty))  # (BM, BK)
            if DROP:
                gx = tl.where(keep, gx * scale, 0.0)
            tl.store(GX + rows[:, None] * stride_gx + cols[None, :],
                     gx.to(GX.dtype.element_ty), mask=inside)


def branch_forward(x: torch.Tensor, A: torch.Tensor, p: float,
                   width: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``[x | dropout(x) Aᵀ]`` (n, k + width) in ``x``'s dtype, and the seed of the dropout mask.

    ``A`` (R, k) may be fp32 (it is cast in the kernel); columns of ``h`` beyond R are zero.
    The seed is ``None`` when ``p == 0``.
    """
    n, k = x.shape
    xh = torch.empty((n, k + width), dtype=x.dtype, device=x.device)
    seed = torch.randint(0, 2**31 - 1, (1,), device=x.device, dtype=torch.int64) if p > 0 else None
    _forward_kernel[(triton.cdiv(n, FWD_BLOCK_M),)](
        x, xh, A, seed if seed is not None else xh, n, A.shape[0], x.stride(0), xh.stride(0),
        A.stride(0), float(p), 1.0 / (1.0 - p), k=k, BM=FWD_BLOCK_M, BK=BLOCK_K, RP=width,
        DROP=p > 0)
    return xh, seed


def branch_backward(xh: torch.Tensor, gh: torch.Tensor, A: torch.Tensor,
                    seed: torch.Tensor | None, p: float, need_gx: bool):
    """``(dropout_backward(gh A), ghᵀ dropout(x))`` for the stacked input ``xh = [x | h]``.

    ``gh`` (n, width) is the gradient of ``h``; the first result is ``None`` unless ``need_gx``;
    A's gradient (R, k) comes out in A's dtype, summed in fp32.
    """
    n, width = gh.shape
    k = xh.shape[1] - width
    blocks = triton.cdiv(n, BWD_BLOCK_M)
    part = torch.empty((blocks, width, k), dtype=torch.float32, device=xh.device)
    gx = torch.empty((n, k), dtype=xh.dtype, device=xh.device) if need_gx else part
    gh = gh.contiguous()
    _backward_kernel[(blocks, triton.cdiv(k, BLOCK_K))](
        xh, gh, A, seed if seed is not None else xh, gx, part, n, A.shape[0], xh.stride(0),
        gh.stride(0), A.stride(0), gx.stride(0), float(p), 1.0 / (1.0 - p), k=k,
        BM=BWD_BLOCK_M, BK=BLOCK_K, RP=width, DROP=p > 0, NEED_GX=need_gx)
    gA = part.sum(0)[:A.shape[0]].to(A.dtype)
    return (gx if need_gx else None), gA


def keep_mask(seed: torch.Tensor, n: int, k: int, p: float) -> torch.Tensor:
    """The (n, k) boolean keep-mask the kernels draw for ``seed`` (for tests and for reading).

    Read out through :func:`branch_backward` with ``gh`` = e₁ and a row of ones in A, so that
    x's gradient is ``keep / (1 - p)`` element by element.
    """
    gh = torch.zeros((n, 16), dtype=torch.float16, device=seed.device)
    gh[:, 0] = 1
    A = torch.ones((1, k), dtype=torch.float32, device=seed.device)
    xh = torch.zeros((n, k + 16), dtype=torch.float16, device=seed.device)
    gx, _ = branch_backward(xh, gh, A, seed, p, need_gx=True)
    return gx != 0
