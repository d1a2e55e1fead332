"""Exercises of chapter 2 (SVD and low-rank approximation)."""

from __future__ import annotations

import numpy as np
import torch

from lorakit.exercises.compare import as_number
from lorakit.exercises.core import ExerciseFailure, assert_close, fail, register
from lorakit.linalg import energy_kept, low_rank_approx, rank_for_energy

# ---- best rank-k approximation -------------------------------------------------------------------


def _approx_smallest(M, k):
    """Keeps the k *smallest* singular directions."""
    U, s, Vh = np.linalg.svd(np.asarray(M, dtype=float), full_matrices=False)
    keep = slice(len(s) - k, len(s))
    return (U[:, keep] * s[keep]) @ Vh[keep]


def _approx_no_sigma(M, k):
    """Forgets the singular values: U_k V_k^T."""
    U, s, Vh = np.linalg.svd(np.asarray(M, dtype=float), full_matrices=False)
    return U[:, :k] @ Vh[:k]


def _approx_off_by_one(M, k):
    U, s, Vh = np.linalg.svd(np.asarray(M, dtype=float), full_matrices=False)
    return (U[:, : k + 1] * s[: k + 1]) @ Vh[: k + 1]


def _approx_numpy_only(M, k):
    """Right for arrays, but turns a tensor into a NumPy array."""
    U, s, Vh = np.linalg.svd(np.asarray(M, dtype=float), full_matrices=False)
    return (U[:, :k] * s[:k]) @ Vh[:k]


@register(
    "ch02.low_rank_approx",
    reference=low_rank_approx,
    wrong=[_approx_smallest, _approx_no_sigma, _approx_off_by_one, _approx_numpy_only],
)
def _check_low_rank_approx(candidate) -> None:
    rng = np.random.default_rng(3)
    for m, n, k in [(8, 6, 2), (5, 9, 1), (7, 7, 4), (6, 4, 4), (6, 5, 0)]:
        M = rng.standard_normal((m, n))
        got = np.asarray(candidate(M.copy(), k), dtype=float)
        what = f"for a {m}x{n} matrix and k={k}"
        if got.shape != (m, n):
            raise ExerciseFailure(f"{what}: expected shape ({m}, {n}), got {got.shape}")
        s = np.linalg.svd(M, compute_uv=False)
        best = float(np.sqrt(np.sum(s[k:] ** 2)))
        err = float(np.linalg.norm(M - got))
        rank = int(np.linalg.matrix_rank(got))
        if rank > k:
            raise ExerciseFailure(
                f"{what}: your matrix has rank {rank}, more than k={k}; keep only "
                "the first k singular triplets"
            )
        if abs(err - best) > 1e-8 * max(1.0, best):
            raise ExerciseFailure(
                f"{what}: ||M - M_k||_F is {err:.6g}, but the best rank-{k} error is {best:.6g} "
                "(sqrt of the sum of the dropped sigma_i^2); keep the k LARGEST singular values "
                "and multiply by them: U[:, :k] @ diag(s[:k]) @ Vh[:k]"
            )
        expected = low_rank_approx(M, k)
        if not np.allclose(got, expected, atol=1e-9):
            worst = float(np.max(np.abs(got - expected)))
            raise ExerciseFailure(
                f"{what}: entries differ from the truncated SVD by up to {worst:.3g}"
            )
    g = torch.Generator().manual_seed(4)
    for dtype, (m, n, k) in ((torch.float64, (7, 5, 2)), (torch.float32, (6, 9, 3))):
        M = torch.randn(m, n, generator=g, dtype=dtype)
        got = candidate(M.clone(), k)
        what = f"for a torch tensor ({m}x{n}, {dtype}) and k={k}"
        if not isinstance(got, torch.Tensor):
            fail(
                f"{what} it returned {type(got).__name__}; return a tensor (use lib.linalg.svd "
                "with lib = torch for tensors, so the result keeps M's type, dtype and device)"
            )
        tol = 1e-9 if dtype == torch.float64 else 1e-4
        assert_close(what, got, low_rank_approx(M, k), atol=tol, rtol=tol)


# ---- energy kept by the top k singular values ----------------------------------------------------


def _energy_not_squared(s, k):
    s = np.asarray(s, dtype=float)
    return float(s[:k].sum() / s.sum())


def _energy_off_by_one(s, k):
    s = np.asarray(s, dtype=float)
    return float(np.sum(s[: k + 1] ** 2) / np.sum(s**2))


_SPECTRA = {
    "[3, 2, 1, 0]": np.array([3.0, 2.0, 1.0, 0.0]),
    "a decaying spectrum 0.8**i (20 values)": 0.8 ** np.arange(20),
    "the singular values of a seeded 12x9 Gaussian matrix": np.linalg.svd(
        np.random.default_rng(5).standard_normal((12, 9)), compute_uv=False
    ),
}


@register(
    "ch02.energy_kept", reference=energy_kept, wrong=[_energy_not_squared, _energy_off_by_one]
)
def _check_energy_kept(candidate) -> None:
    for label, s in _SPECTRA.items():
        for k in sorted({0, 1, 2, len(s) // 2, len(s)}):
            got = candidate(s.copy(), k)
            expected = energy_kept(s, k)
            value = float(as_number(f"for {label} and k={k} the result", got))
            if not abs(value - expected) <= 1e-9:
                hint = ""
                if abs(value - float(np.sum(s[:k]) / np.sum(s))) < 1e-9:
                    hint = " (energy is the sum of SQUARED singular values)"
                raise ExerciseFailure(
                    f"for {label} and k={k} it returned {value:.6g}, expected {expected:.6g}{hint}"
                )


# ---- the smallest k that keeps a given fraction of the energy ------------------------------------


def _k_index_not_count(s, fraction):
    return rank_for_energy(s, fraction) - 1


def _k_not_squared(s, fraction):
    s = np.asarray(s, dtype=float)
    kept = np.cumsum(s) / s.sum()
    return int(np.searchsorted(kept, fraction - 1e-12) + 1)


def _k_strictly_more(s, fraction):
    s = np.asarray(s, dtype=float)
    kept = np.cumsum(s**2) / np.sum(s**2)
    return int(np.sum(kept <= fraction) + 1) if fraction < 1 else len(s)


@register(
    "ch02.rank_for_energy",
    reference=rank_for_energy,
    wrong=[_k_index_not_count, _k_not_squared, _k_strictly_more],
)
def _check_rank_for_energy(candidate) -> None:
    cases = [("[3, 2, 1, 0]", _SPECTRA["[3, 2, 1, 0]"], f) for f in (9 / 14, 0.5, 0.9, 1.0)]
    for label, s in list(_SPECTRA.items())[1:]:
        cases += [(label, s, f) for f in (0.5, 0.9, 0.99)]
    for label, s, fraction in cases:
        got = candidate(s.copy(), fraction)
        expected = rank_for_energy(s, fraction)
        got = as_number(f"for {label} and fraction={fraction:.4g} the result", got, integer=True)
        if got != expected:
            raise ExerciseFailure(
                f"for {label} and fraction={fraction:.4g} it returned k={got}, "
                f"expected {expected}: "
                f"the smallest k with energy_kept(s, k) >= fraction (top-{expected} energy "
                f"{energy_kept(s, expected):.4f}"
                + (
                    f", top-{expected - 1} energy {energy_kept(s, expected - 1):.4f})"
                    if expected
                    else ")"
                )
            )
