"""Model FLOPs utilisation (MFU): how much of the hardware's matrix rate a training run uses.

MFU = (model FLOPs per token) x (tokens per second) / (peak matrix FLOP/s), with the peak
*measured* on the same device in the same run (a large matmul loop), not taken from a data sheet.
Model FLOPs per token follow the usual convention (Kaplan et al. 2020; Chowdhery et al. 2022):
6 FLOPs per weight per token for the forward and backward pass of every matrix multiply, plus
the attention scores and their weighted sums, 12 * n_layer * T * d per token (counted without
the causal half-saving, as PaLM does).
"""

from __future__ import annotations

import time

import torch


def model_flops_per_token(
    n_layer: int, n_embd: int, vocab_size: int, seq_len: int, n_params_nonembedding: int
) -> dict[str, float]:
    """Training FLOPs per token of a GPT-2 style model.

    Parameters
    ----------
    n_layer, n_embd : depth and width.
    vocab_size : rows of the LM head (tied to the token embedding; its matmul is real work).
    seq_len : tokens per sequence T.
    n_params_nonembedding : parameters outside the token and position embeddings.

    Returns
    -------
    dict
        ``dense`` = 6 * n_params_nonembedding, ``lm_head`` = 6 * vocab_size * n_embd,
        ``attention`` = 12 * n_layer * seq_len * n_embd, and ``total`` their sum.
    """
    dense = 6.0 * n_params_nonembedding
    head = 6.0 * vocab_size * n_embd
    attention = 12.0 * n_layer * seq_len * n_embd
    return {
        "dense": dense,
        "lm_head": head,
        "attention": attention,
        "total": dense + head + attention,
    }


def measure_matmul_peak(
    device: str | torch.device,
    *,
    n: int = 8192,
    seconds: float = 3.0,
    dtype: torch.dtype | None = None,
) -> float:
    """Measured matrix-multiply rate of ``device`` in TFLOP/s.

    Parameters
    ----------
    device : where to measure.
    n : size of the square matrices (8192 on a GPU; use ~1024 on a CPU).
    seconds : how long to keep multiplying (after one warm-up product).
    dtype : default bf16 on CUDA (what training's autocast runs), fp32 elsewhere.

    Returns
    -------
    float
        2 * n**3 FLOPs per product, divided by the measured time per product, in 1e12 FLOP/s.
    """
    device = torch.device(device)
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device, dtype)
    b = torch.randn(n, n, generator=gen).to(device, dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    torch.matmul(a, b, out=out)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *_: None)
    sync(device)
    reps, start = 0, time.perf_counter()
    batch = 10 if device.type == "cuda" else 1
    while time.perf_counter() - start < seconds:
        for _ in range(batch):
            torch.matmul(a, b, out=out)
        reps += batch
        sync(device)
    elapsed = time.perf_counter() - start
    return 2.0 * n**3 * reps / elapsed / 1e12
