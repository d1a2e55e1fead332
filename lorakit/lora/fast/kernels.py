"""Two Triton kernels for the LoRA branch's dropout (CUDA, bf16/fp16): no mask kept, fewer passes.

With PyTorch ops the dropout of the branch input costs, per layer and step of
:class:`~lorakit.lora.fast.function.StackedMatmul` (the fused path): a dropout kernel that
writes ``dropout(x)`` and a boolean mask, a concatenation that reads ``x`` again to build the
stacked input ``[x | h]``; in backward, a matmul that writes the branch's input gradient
``gh A`` (n, k), a dropout-backward kernel that reads it with the mask and writes it again, and
the base's gradient added onto it.
Every one of these moves an (n, k) tensor through memory, and the mask is kept from forward to
backward. The kernels here do the same work in two passes:

* :func:`dropout_and_copy` reads ``x`` once and writes both ``x`` into the stacked input and
  ``dropout(x)`` (kept for A's gradient); the keep/drop decisions come from a counter-based
  generator (Philox, ``tl.randint4x``, on a seed and the element's position), so no mask is
  stored;
* :func:`branch_grads` draws the same decisions again from the seed and adds
  ``dropout_backward(gh A)`` onto the base's input gradient; ``gh A`` (a rank-R' product) is
  computed tile by tile and never written out. In the same pass it reads ``dropout(x)`` and sums
  A's gradient ``ghᵀ dropout(x)``, which a skinny cuBLAS matmul (split over k) does slowly.

Only element-wise work and the branch's products with R' ≤ 128 (``gh A`` and ``ghᵀ dropout(x)``)
are done here: the large matmuls stay with cuBLAS. The seed is one int64 drawn on the device
from PyTorch's generator per forward call (:func:`new_seed`), so ``torch.manual_seed`` makes runs
repeatable and each replay of a CUDA graph draws a fresh mask. The decisions are not the ones
``nn.Dropout`` would make (another generator); their distribution is: each element is kept with
probability ``1 - p`` and scaled by ``1 / (1 - p)``, with ``p`` rounded to a multiple of 2⁻¹⁶
(:func:`threshold`).

:func:`usable` says when the kernels apply: Triton installed, a CUDA tensor in bf16 or fp16, and
by default only while a CUDA graph is being captured (:func:`mode` says why); otherwise the fused
path uses PyTorch ops. ``TRITON_INTERPRET=1`` runs the kernels on the CPU (tests).
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs (CI): the fused path uses PyTorch ops
    triton = None

DTYPES = (torch.bfloat16, torch.float16)
MAX_RANK = 128  # the widest h the backward kernel takes (wider ranks use PyTorch ops)
GROUP = 128  # columns per draw group: one Philox call gives the decisions of 8 elements
COPY_ROWS, GRAD_ROWS = 16, 16  # rows of a tile of the forward and the backward kernel
COPY_WARPS, GRAD_WARPS = 4, 4
GRAD_TILES = 4  # row tiles per backward program: A's gradient is summed over chunks this tall
MODES = ("graph", "always", "never")
_mode: str | None = None  # None: from the environment (LORAKIT_TRITON), else "graph"


def mode() -> str:
    """When the kernels run: ``"graph"`` (default) only while a CUDA graph is being captured,
    ``"always"``, or ``"never"``. Set with :func:`set_mode` or ``LORAKIT_TRITON`` (0, 1, graph).

    Why ``"graph"`` by default: a Triton launch from Python costs more host time than the
    PyTorch ops it replaces, and an eager LoRA step on GPT-2-sized models is bound by host time.
    Inside a CUDA graph launches cost nothing on the host, and the kernels save GPU time
    (``python -m lorakit.bench train-step`` measures both;
    :class:`lorakit.train.graph.CUDAGraphStep` captures whole steps).
    """
    if _mode is not None:
        return _mode
    env = os.environ.get("LORAKIT_TRITON", "graph").strip().lower()
    named = {"0": "never", "1": "always", "": "graph"}.get(env, env)
    if named not in MODES:
        raise ValueError(
            f"LORAKIT_TRITON={env!r} is not understood; use 0 (never), "
            "1 (always) or graph (only inside CUDA graph capture, the default)."
        )
    return named


def set_mode(new: str | None) -> str | None:
    """Set :func:`mode` for this process (``None``: back to the environment); returns the old
    setting, so that ``old = set_mode("never"); ...; set_mode(old)`` restores it."""
    global _mode
    if new is not None and new not in MODES:
        raise ValueError(f"mode must be one of {MODES} (or None), got {new!r}.")
    old, _mode = _mode, new
    return old


def usable(x: torch.Tensor, width: int) -> bool:
    """Whether the kernels run for the input ``x`` (n, k) of a branch of inner size ``width``:
    Triton installed, a CUDA bf16/fp16 matrix (or ``TRITON_INTERPRET=1``), and :func:`mode`."""
    if triton is None or x.dtype not in DTYPES or x.dim() != 2 or width > MAX_RANK:
        return False
    if x.stride(1) != 1 or x.numel() >= 2**31:  # the generator's counters are int32
        return False
    if not (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
        return False
    m = mode()
    return m == "always" or (
        m == "graph" and x.is_cuda and torch.cuda.is_current_stream_capturing()
    )


def new_seed(device: torch.device) -> torch.Tensor:
    """One int64 seed on ``device``, drawn from PyTorch's generator (graph-safe, no host sync)."""
    return torch.randint(0, 2**31 - 1, (1,), device=device, dtype=torch.int64)


def threshold(p: float) -> tuple[int, float]:
    """``(t, scale)``: an element is dropped when its 16-bit draw is below ``t = round(p·2¹⁶)``,
    and kept ones are scaled by ``scale = 1 / (1 - t/2¹⁶)``, so the output stays unbiased.

    The drop probability is ``p`` rounded to a multiple of 2⁻¹⁶ (0.1 -> 0.100006).
    """
    t = min(max(round(p * 65536), 0), 65535)
    return t, 65536.0 / (65536 - t)


if triton is not None:

    @triton.jit
    def _keep(seed, rows, group, n_groups, thr, BM: tl.constexpr, G: tl.constexpr):
        """Keep decisions for ``rows`` × the ``G`` columns of column group ``group``.

        Philox gives four 32-bit words per counter, each split into two 16-bit draws: one
        counter (row, group, c) decides 8 elements, so the generator's arithmetic stays well
        under the memory traffic. Forward and backward call this with the same arguments and
        get the same decisions.
        """
        ctr = (rows[:, None] * n_groups + group) * (G // 8) + tl.arange(0, G // 8)[None, :]
        r0, r1, r2, r3 = tl.randint4x(tl.load(seed), ctr)
        r = tl.join(tl.join(r0, r1), tl.join(r2, r3)).to(tl.uint32, bitcast=True)
        draws = tl.join(r & 0xFFFF, (r >> 16) & 0xFFFF).to(tl.int32)  # (BM, G/8, 2, 2, 2)
        return tl.reshape(draws, (BM, G)) >= thr

    @triton.jit
    def _dropout_copy_kernel(
        X,
        XH,
        XD,
        SEED,
        n,
        k,
        n_groups,
        stride_x,
        stride_xh,
        thr,
        scale,
        BM: tl.constexpr,
        G: tl.constexpr,
    ):
        """One tile: ``XH[tile] = x``, ``XD[tile] = dropout(x)`` with the seed's decisions."""
        rows = tl.program_id(0) * BM + tl.arange(0, BM)
        cols = tl.program_id(1) * G + tl.arange(0, G)
        inside = (rows < n)[:, None] & (cols < k)[None, :]
        x = tl.load(X + rows[:, None] * stride_x + cols[None, :], mask=inside, other=0.0)
        tl.store(XH + rows[:, None] * stride_xh + cols[None, :], x, mask=inside)
        keep = _keep(SEED, rows, tl.program_id(1), n_groups, thr, BM, G)
        xd = tl.where(keep, x.to(tl.float32) * scale, 0.0)
        tl.store(XD + rows[:, None] * k + cols[None, :], xd.to(XD.dtype.element_ty), mask=inside)

    @triton.jit
    def _branch_grad_kernel(
        GX,
        GH,
        A,
        SEED,
        OUT,
        XD,
        PART,
        n,
        k,
        n_groups,
        width,
        stride_gx,
        stride_gh,
        stride_a,
        thr,
        scale,
        BM: tl.constexpr,
        G: tl.constexpr,
        BR: tl.constexpr,
        TILES: tl.constexpr,
        NEED_A: tl.constexpr,
    ):
        """``TILES`` row tiles × one column group: ``OUT = GX + dropout_backward(gh A)`` with the
        decisions redrawn; with ``NEED_A`` also this chunk's share of ``ghᵀ dropout(x)``."""
        cols = tl.program_id(1) * G + tl.arange(0, G)
        rr = tl.arange(0, BR)
        cols_in, rr_in = cols < k, rr < width
        a = tl.load(
            A + rr[:, None] * stride_a + cols[None, :],
            mask=rr_in[:, None] & cols_in[None, :],
            other=0.0,
        )
        part = tl.zeros((BR, G), dtype=tl.float32)
        for t in range(TILES):
            rows = (tl.program_id(0) * TILES + t) * BM + tl.arange(0, BM)
            rows_in = rows < n
            inside = rows_in[:, None] & cols_in[None, :]
            gh = tl.load(
                GH + rows[:, None] * stride_gh + rr[None, :],
                mask=rows_in[:, None] & rr_in[None, :],
                other=0.0,
            )
            branch = tl.dot(gh, a.to(gh.dtype))  # (BM, G) of gh A, in fp32
            keep = _keep(SEED, rows, tl.program_id(1), n_groups, thr, BM, G)
            gx = tl.load(GX + rows[:, None] * stride_gx + cols[None, :], mask=inside, other=0.0)
            gx = gx.to(tl.float32) + tl.where(keep, branch * scale, 0.0)
            tl.store(
                OUT + rows[:, None] * k + cols[None, :], gx.to(OUT.dtype.element_ty), mask=inside
            )
            if NEED_A:
                xd = tl.load(XD + rows[:, None] * k + cols[None, :], mask=inside, other=0.0)
                part += tl.dot(tl.trans(gh), xd.to(gh.dtype))  # (BR, G)
        if NEED_A:
            tl.store(
                PART + (tl.program_id(0) * BR + rr[:, None]) * k + cols[None, :],
                part,
                mask=cols_in[None, :],
            )


def dropout_and_copy(
    x: torch.Tensor, xh: torch.Tensor, p: float, seed: torch.Tensor
) -> torch.Tensor:
    """Write ``x`` (n, k) into ``xh[:, :k]``; return ``dropout_p(x)`` (n, k), drawn from ``seed``.

    ``xh`` is the stacked input (n, ≥ k) with unit column stride; ``0 < p < 1``.
    """
    n, k = x.shape
    xd = torch.empty((n, k), dtype=x.dtype, device=x.device)
    groups = triton.cdiv(k, GROUP)
    _dropout_copy_kernel[(triton.cdiv(n, COPY_ROWS), groups)](
        x,
        xh,
        xd,
        seed,
        n,
        k,
        groups,
        x.stride(0),
        xh.stride(0),
        *threshold(p),
        BM=COPY_ROWS,
        G=GROUP,
        num_warps=COPY_WARPS,
    )
    return xd


def branch_grads(
    gx: torch.Tensor,
    gh: torch.Tensor,
    A: torch.Tensor,
    p: float,
    seed: torch.Tensor,
    xd: torch.Tensor | None = None,
):
    """The input gradient ``gx + dropout_backward(gh A)`` and, given ``xd``, A's ``ghᵀ xd``.

    ``gx`` (n, k) is the base layer's input gradient, ``gh`` (n, R') that of ``h``, ``A`` (R', k);
    all need unit column strides (any row strides: ``gx`` and ``gh`` may be the two parts of one
    (n, k + R') matrix). ``xd`` is the dropped input :func:`dropout_and_copy` returned with the
    same ``seed``. Returns a new contiguous (n, k) tensor in ``gx``'s dtype, and A's gradient
    (R', k) in fp32 (summed over row chunks in fp32), or ``None`` without ``xd``: one pass over
    the (n, k) tensors gives both, instead of a second read of ``dropout(x)`` by a matmul.
    """
    n, k = gx.shape
    width = gh.shape[1]
    if A.shape != (width, k) or gh.shape[0] != n or width > MAX_RANK:
        raise ValueError(
            f"gh {tuple(gh.shape)} and A {tuple(A.shape)} do not fit gx {(n, k)} "
            f"(or R' > {MAX_RANK})."
        )
    if xd is not None and (xd.shape != (n, k) or not xd.is_contiguous()):
        raise ValueError(f"xd must be a contiguous {(n, k)} tensor, got {tuple(xd.shape)}.")
    groups = triton.cdiv(k, GROUP)
    chunks = triton.cdiv(n, GRAD_ROWS * GRAD_TILES)
    br = max(16, triton.next_power_of_2(width))
    out = torch.empty((n, k), dtype=gx.dtype, device=gx.device)
    part = (
        None if xd is None else torch.empty((chunks, br, k), dtype=torch.float32, device=gx.device)
    )
    _branch_grad_kernel[(chunks, groups)](
        gx,
        gh,
        A,
        seed,
        out,
        out if xd is None else xd,
        out if part is None else part,
        n,
        k,
        groups,
        width,
        gx.stride(0),
        gh.stride(0),
        A.stride(0),
        *threshold(p),
        BM=GRAD_ROWS,
        G=GROUP,
        BR=br,
        TILES=GRAD_TILES,
        NEED_A=xd is not None,
        num_warps=GRAD_WARPS,
    )
    return out, None if part is None else part.sum(0)[:width]


def keep_mask(
    seed: torch.Tensor, n: int, k: int, p: float, dtype: torch.dtype = torch.float16
) -> torch.Tensor:
    """The (n, k) boolean keep-decisions the kernels draw for ``seed`` (for tests and teaching)."""
    ones = torch.ones((n, k), dtype=dtype, device=seed.device)
    return dropout_and_copy(ones, torch.empty_like(ones), p, seed) != 0
