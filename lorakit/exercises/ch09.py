"""Chapter 9 exercises: the subspace similarity φ (paper §7.2) and the amplification factor (§7.3).

The references are the notebook's solutions (cells carry ``# sync: lorakit.exercises.ch09.<name>``);
the checkers compare them with :mod:`lorakit.analysis`, which adds input checks to the same maths.
"""

from __future__ import annotations

import torch

from lorakit import analysis
from lorakit.exercises.compare import assert_number
from lorakit.exercises.core import register

# ----------------------------------------------------------------------------- references


def subspace_similarity(A1: torch.Tensor, A2: torch.Tensor, i: int, j: int) -> float:
    """φ(A1, A2, i, j) = ‖U1[:, :i]ᵀ U2[:, :j]‖_F² / min(i, j), U the right-singular vectors
    (as columns, largest σ first) of A1 (r1, k) and A2 (r2, k)."""
    U1 = torch.linalg.svd(A1.double(), full_matrices=False).Vh.T  # (k, r1)
    U2 = torch.linalg.svd(A2.double(), full_matrices=False).Vh.T  # (k, r2)
    overlap = U1[:, :i].T @ U2[:, :j]  # (i, j): cosines between the directions
    return float((overlap**2).sum() / min(i, j))


def amplification_factor(W: torch.Tensor, dW: torch.Tensor, r: int) -> float:
    """‖ΔW‖_F / ‖Uᵀ W V‖_F, with U (d, r), V (k, r) the top-r singular directions of ΔW (d, k)."""
    U, _, Vh = torch.linalg.svd(dW.double(), full_matrices=False)
    projected = U[:, :r].T @ W.double() @ Vh[:r].T  # (r, r): W seen in ΔW's directions
    return float(torch.linalg.matrix_norm(dW.double()) / torch.linalg.matrix_norm(projected))


# ----------------------------------------------------------------------------- typical mistakes


def _phi_no_square(A1, A2, i, j):
    U1 = torch.linalg.svd(A1.double(), full_matrices=False).Vh.T
    U2 = torch.linalg.svd(A2.double(), full_matrices=False).Vh.T
    return float((U1[:, :i].T @ U2[:, :j]).abs().sum() / min(i, j))


def _phi_max(A1, A2, i, j):
    U1 = torch.linalg.svd(A1.double(), full_matrices=False).Vh.T
    U2 = torch.linalg.svd(A2.double(), full_matrices=False).Vh.T
    return float(((U1[:, :i].T @ U2[:, :j]) ** 2).sum() / max(i, j))


def _phi_qr(A1, A2, i, j):
    # an orthonormal basis of the rows, but not ordered by singular value
    U1, U2 = torch.linalg.qr(A1.double().T).Q, torch.linalg.qr(A2.double().T).Q
    return float(((U1[:, :i].T @ U2[:, :j]) ** 2).sum() / min(i, j))


def _amp_weight_directions(W, dW, r):
    U, _, Vh = torch.linalg.svd(W.double(), full_matrices=False)
    return float(
        torch.linalg.matrix_norm(dW.double())
        / torch.linalg.matrix_norm(U[:, :r].T @ W.double() @ Vh[:r].T)
    )


def _amp_w_norm(W, dW, r):
    U, _, Vh = torch.linalg.svd(dW.double(), full_matrices=False)
    return float(
        torch.linalg.matrix_norm(W.double())
        / torch.linalg.matrix_norm(U[:, :r].T @ W.double() @ Vh[:r].T)
    )


def _amp_left_only(W, dW, r):
    U, _, _ = torch.linalg.svd(dW.double(), full_matrices=False)
    return float(
        torch.linalg.matrix_norm(dW.double()) / torch.linalg.matrix_norm(U[:, :r].T @ W.double())
    )


# ----------------------------------------------------------------------------- checkers


def _lora_A(r: int, k: int, seed: int) -> torch.Tensor:
    # rows of different scales, so the order of the singular directions matters
    g = torch.Generator().manual_seed(seed)
    scales = torch.linspace(3.0, 0.5, r)[:, None]
    return (
        scales * torch.randn(r, k, generator=g) @ torch.linalg.qr(torch.randn(k, k, generator=g)).Q
    )


@register(
    "ch09.subspace_similarity",
    reference=subspace_similarity,
    wrong=[_phi_no_square, _phi_max, _phi_qr],
)
def _check_subspace_similarity(candidate) -> None:
    A8, A16 = _lora_A(8, 40, 0), _lora_A(16, 40, 1)
    A16[:3] += 2.0 * A8[:3]  # share a few directions, as trained adapters do
    rot = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(2))).Q
    cases = [
        (A8, A16, 1, 1),
        (A8, A16, 3, 5),
        (A8, A16, 8, 16),
        (A16, A8, 6, 2),
        (A8, rot @ A8, 8, 8),
        (A8, A8, 4, 4),
    ]
    for n, (a1, a2, i, j) in enumerate(cases):
        assert_number(
            f"φ(A1 {tuple(a1.shape)}, A2 {tuple(a2.shape)}, i={i}, j={j}) (case {n})",
            candidate(a1, a2, i, j),
            analysis.subspace_similarity(a1, a2, i, j),
            atol=1e-6,
            rtol=1e-6,
        )


@register(
    "ch09.amplification_factor",
    reference=amplification_factor,
    wrong=[_amp_weight_directions, _amp_w_norm, _amp_left_only],
)
def _check_amplification_factor(candidate) -> None:
    g = torch.Generator().manual_seed(3)
    W = torch.randn(24, 20, generator=g)
    for r, scale in ((2, 0.5), (4, 0.1), (6, 1.0)):
        dW = scale * torch.randn(24, r, generator=g) @ torch.randn(r, 20, generator=g)
        assert_number(
            f"amplification_factor(W (24, 20), dW of rank {r}, r={r})",
            candidate(W, dW, r),
            analysis.amplification_factor(W, dW, r),
            atol=1e-6,
            rtol=1e-6,
        )
