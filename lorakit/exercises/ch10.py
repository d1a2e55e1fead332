"""Chapter 10 exercises: many adapters in one batch, and GPT-2's q,v adapter as one PEFT LoRA.

The references are the notebook's solutions (cells carry ``# sync: lorakit.exercises.ch10.<name>``);
:mod:`lorakit.serving` computes the same things with more checks.
"""

from __future__ import annotations

import torch

from lorakit.exercises.core import assert_close, fail, register

# ----------------------------------------------------------------------------- references


def mixed_lora_delta(
    x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, slots: torch.Tensor
) -> torch.Tensor:
    """Each row's LoRA branch with its own adapter, as two batched matmuls (no loop over rows).

    x (n, T, k) inputs; A (S, R, k) and B (S, d, R) the stacked factors of S adapters (B already
    scaled); slots (n,) the adapter of each row. Returns (n, T, d): row b is
    ``x[b] A[slots[b]]ᵀ B[slots[b]]ᵀ``.
    """
    A_rows = A.index_select(0, slots)  # (n, R, k): each row's A, gathered
    B_rows = B.index_select(0, slots)  # (n, d, R)
    h = torch.bmm(x, A_rows.transpose(1, 2))  # (n, T, R)
    return torch.bmm(h, B_rows.transpose(1, 2))  # (n, T, d)


def qv_as_one_lora(
    A_q: torch.Tensor, B_q: torch.Tensor, A_v: torch.Tensor, B_v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """GPT-2's q,v adapter on the fused ``c_attn`` (outputs q, k, v) as one rank-2r LoRA.

    A_q, A_v (r, k); B_q, B_v (d, r). Returns A (2r, k) = [A_q; A_v] and the block matrix
    B (3d, 2r) = [[B_q, 0], [0, 0], [0, B_v]], so that ``B A = [B_q A_q; 0; B_v A_v]``.
    """
    d, r = B_q.shape
    A = torch.cat([A_q, A_v], dim=0)
    B = B_q.new_zeros(3 * d, 2 * r)
    B[:d, :r] = B_q  # q's rows, q's columns
    B[2 * d :, r:] = B_v  # v's rows, v's columns; k's rows stay zero
    return A, B


# ----------------------------------------------------------------------------- typical mistakes


def _first_row_adapter(x, A, B, slots):
    s = slots[0]  # every row gets the first row's adapter
    return x @ A[s].T @ B[s].T


def _sorted_not_restored(x, A, B, slots):
    order = torch.argsort(slots)  # grouped by adapter, but left in that order
    return mixed_lora_delta(x[order], A, B, slots[order])


def _summed_adapters(x, A, B, slots):
    return sum(x @ A[s].T @ B[s].T for s in range(A.shape[0]))  # every adapter on every row


def _k_rows_last(A_q, B_q, A_v, B_v):
    d, r = B_q.shape
    B = B_q.new_zeros(3 * d, 2 * r)
    B[:d, :r], B[d : 2 * d, r:] = B_q, B_v  # v placed in k's rows
    return torch.cat([A_q, A_v]), B


def _no_blocks(A_q, B_q, A_v, B_v):
    d, r = B_q.shape
    B = B_q.new_zeros(3 * d, 2 * r)
    B[:d], B[2 * d :] = torch.cat([B_q, B_q], 1), torch.cat([B_v, B_v], 1)  # B_q meets A_v too
    return torch.cat([A_q, A_v]), B


def _A_swapped(A_q, B_q, A_v, B_v):
    _, B = qv_as_one_lora(A_q, B_q, A_v, B_v)
    return torch.cat([A_v, A_q]), B


# ----------------------------------------------------------------------------- checkers


@register(
    "ch10.mixed_lora_delta",
    reference=mixed_lora_delta,
    wrong=[_first_row_adapter, _sorted_not_restored, _summed_adapters],
)
def _check_mixed_lora_delta(candidate) -> None:
    g = torch.Generator().manual_seed(10)
    for n, T, k, d, R, S in ((5, 3, 8, 6, 2, 4), (2, 1, 4, 4, 3, 2), (7, 4, 6, 9, 1, 3)):
        x = torch.randn(n, T, k, generator=g)
        A, B = torch.randn(S, R, k, generator=g), torch.randn(S, d, R, generator=g)
        A[0], B[0] = 0, 0  # slot 0: the base (no adapter)
        slots = torch.tensor([(3 * i + 1) % S for i in range(n)])
        got = candidate(x, A, B, slots)
        assert_close(
            f"mixed_lora_delta(x {tuple(x.shape)}, A {tuple(A.shape)}, B {tuple(B.shape)}, "
            f"slots {slots.tolist()})",
            got,
            mixed_lora_delta(x, A, B, slots),
        )


@register(
    "ch10.qv_as_one_lora", reference=qv_as_one_lora, wrong=[_k_rows_last, _no_blocks, _A_swapped]
)
def _check_qv_as_one_lora(candidate) -> None:
    g = torch.Generator().manual_seed(11)
    for d, k, r in ((4, 5, 2), (6, 6, 1), (3, 8, 3)):
        A_q, A_v = torch.randn(r, k, generator=g), torch.randn(r, k, generator=g)
        B_q, B_v = torch.randn(d, r, generator=g), torch.randn(d, r, generator=g)
        got = candidate(A_q, B_q, A_v, B_v)
        if not isinstance(got, tuple) or len(got) != 2:
            fail(f"qv_as_one_lora should return (A, B), got {type(got).__name__}")
        A, B = got
        want_A, want_B = qv_as_one_lora(A_q, B_q, A_v, B_v)
        assert_close(f"A for r={r}, k={k}", A, want_A)
        assert_close(f"B for d={d}, r={r}", B, want_B)
        delta = torch.cat([B_q @ A_q, torch.zeros(d, k), B_v @ A_v])
        assert_close(f"B @ A (d={d}, r={r}): q's, k's (zero) and v's updates", B @ A, delta)
