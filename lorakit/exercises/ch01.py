"""Exercises of chapter 1 (rank, full rank, low rank): rank by elimination, the rank of a noisy
update, and a low-rank matrix written as ``B @ A``.

The references are :mod:`lorakit.linalg`'s functions, the same code as the notebook's solutions
(its cells carry ``# sync: lorakit.linalg.<name>``).
"""

from __future__ import annotations

import math

import numpy as np

from lorakit.exercises.compare import as_number
from lorakit.exercises.core import ExerciseFailure, fail, register
from lorakit.linalg import (
    low_rank_factors,
    numerical_rank,
    random_low_rank,
    rank_by_elimination,
    rank_under_noise,
)

# ---- rank by Gaussian elimination ---------------------------------------------------------------


def _rank_cases() -> list[tuple[str, np.ndarray]]:
    """Named matrices with known rank: the first examples, traps for pivoting, seeded random
    ones."""
    cases = [
        ("[[1,2,3],[4,5,6],[7,8,9]]", np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=float)),
        ("the 2x2 identity", np.eye(2)),
        ("[[1,2],[2,4]]", np.array([[1, 2], [2, 4]], dtype=float)),
        ("[[0,1],[1,0]] (needs a row swap)", np.array([[0, 1], [1, 0]], dtype=float)),
        ("[[0,0,1],[0,0,2]] (zero leading columns)", np.array([[0, 0, 1], [0, 0, 2]], dtype=float)),
        ("the 3x4 zero matrix", np.zeros((3, 4))),
    ]
    for seed in (3, 8):  # a tiny first row: a small pivot turns round-off into a spurious pivot
        rng = np.random.default_rng(seed)
        B, A = rng.standard_normal((5, 2)), rng.standard_normal((2, 5))
        B[0] *= 1e-7
        cases.append(
            (f"a 5x5 matrix of rank 2 whose first row is tiny (~1e-7, seed {seed})", B @ A)
        )
    rng = np.random.default_rng(2024)
    for i in range(12):
        m, n = (int(x) for x in rng.integers(2, 25, size=2))
        r = int(rng.integers(1, min(m, n) + 1))
        scale = 10.0 ** int(rng.integers(-6, 7))
        M = random_low_rank(m, n, r, seed=100 + i) * scale
        cases.append((f"a random {m}x{n} matrix of rank {r} (entries scaled by {scale:g})", M))
    return cases


def _rank_off_by_one(M, tol=None) -> int:
    return rank_by_elimination(M, tol) + 1


def _rank_exact_zero_test(M, tol=None) -> int:
    """Treats an entry as zero only when it is exactly 0.0: float round-off counts as rank."""
    return rank_by_elimination(M, tol=0.0)


def _rank_no_pivot_search(M, tol=None) -> int:
    """Uses the diagonal entry as the pivot and stops when it is (near) zero: no swaps."""
    A = np.array(M, dtype=float)
    m, n = A.shape
    tol = max(m, n) * np.finfo(float).eps * np.linalg.norm(A) if tol is None else tol
    rank = 0
    while rank < min(m, n) and abs(A[rank, rank]) > tol:
        A[rank + 1 :, rank:] -= np.outer(A[rank + 1 :, rank] / A[rank, rank], A[rank, rank:])
        rank += 1
    return rank


def _rank_first_nonzero_pivot(M, tol=None) -> int:
    """Row echelon form with the first entry above tol in each column as the pivot."""
    A = np.array(M, dtype=float)
    m, n = A.shape
    tol = max(m, n) * np.finfo(float).eps * np.linalg.norm(A) if tol is None else tol
    rank = 0
    for col in range(n):
        rows = [i for i in range(rank, m) if abs(A[i, col]) > tol]
        if not rows:
            continue
        A[[rank, rows[0]]] = A[[rows[0], rank]]
        A[rank + 1 :, col:] -= np.outer(A[rank + 1 :, col] / A[rank, col], A[rank, col:])
        rank += 1
        if rank == m:
            break
    return rank


def _rank_in_place(M, tol=None) -> int:
    """Right answer, but eliminates in the caller's own array (no copy)."""
    A = np.asarray(M)
    result = rank_by_elimination(A, tol)
    A[1:] -= A[1:]  # what in-place elimination leaves behind: rows below the first changed
    return result


@register(
    "ch01.rank_by_elimination",
    reference=rank_by_elimination,
    wrong=[
        _rank_off_by_one,
        _rank_exact_zero_test,
        _rank_no_pivot_search,
        _rank_first_nonzero_pivot,
        _rank_in_place,
    ],
)
def _check_rank_by_elimination(candidate) -> None:
    for label, M in _rank_cases():
        original = M.copy()
        expected = int(np.linalg.matrix_rank(M))
        got = candidate(M)
        if not np.array_equal(M, original):
            raise ExerciseFailure(
                f"your function changed its input ({label}); eliminate in a copy, e.g. "
                "A = np.array(M, dtype=float)"
            )
        got = as_number(f"for {label} the result", got, integer=True)
        if got != expected:
            if got > expected:
                hint = (
                    " (too many pivots: an entry that is zero up to round-off was used as a "
                    "pivot. Take the LARGEST entry of the remaining block as the pivot, not the "
                    "first non-zero one: dividing by a small pivot magnifies round-off into "
                    "entries above tol; and stop when the largest entry is <= tol)"
                )
            else:
                hint = (
                    " (too few pivots: search the whole remaining block for the pivot and swap "
                    "its row and column into place; a zero on the diagonal does not mean the "
                    "block is zero)"
                )
            raise ExerciseFailure(
                f"for {label} it returned rank {got}, numpy.linalg.matrix_rank "
                f"says {expected}{hint}"
            )


# ---- the rank of a noisy update ------------------------------------------------------------------


def _noisy_case(m: int, n: int, svals: list[float], sigma: float, seed: int):
    """M = L + N: L with singular values ``svals`` times the noise edge (exact values if
    sigma=0)."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((m, m)))[0][:, : len(svals)]
    V = np.linalg.qr(rng.standard_normal((n, n)))[0][:, : len(svals)]
    edge = sigma * (math.sqrt(m) + math.sqrt(n))
    L = (U * (np.array(svals, dtype=float) * (edge if sigma else 1.0))) @ V.T
    return L + sigma * rng.standard_normal((m, n))


# (m, n, signal singular values in units of the noise edge, noise std, seed): every signal value
# is >= 3x the edge, so any threshold between about 1.0x and 2.6x the edge counts right.
_NOISY = [
    (40, 30, [3, 5, 8], 0.1, 0),
    (64, 64, [100, 4, 3], 1e-3, 1),
    (30, 60, [3.5, 20], 2.0, 2),
    (50, 50, [], 0.5, 3),
    (24, 16, [3, 3, 3, 3, 3], 1e-6, 4),
    (80, 40, [6, 3.2], 1e6, 6),
    (20, 20, [5, 4, 3, 2, 1], 0.0, 5),
]


def _noise_numpy_default(M, noise_std):
    return int(np.linalg.matrix_rank(np.asarray(M, dtype=float)))


def _noise_std_as_tol(M, noise_std):
    return int(np.sum(np.linalg.svd(np.asarray(M, dtype=float), compute_uv=False) > noise_std))


def _noise_sqrt_max(M, noise_std):
    """sigma * sqrt(max(m, n)): half the edge of a square matrix."""
    M = np.asarray(M, dtype=float)
    return int(np.sum(np.linalg.svd(M, compute_uv=False) > noise_std * math.sqrt(max(M.shape))))


def _noise_no_roundoff(M, noise_std):
    """The edge alone: with noise_std = 0 every round-off singular value counts."""
    M = np.asarray(M, dtype=float)
    edge = noise_std * (math.sqrt(M.shape[0]) + math.sqrt(M.shape[1]))
    return int(np.sum(np.linalg.svd(M, compute_uv=False) > 1.25 * edge))


def _noise_relative(M, noise_std):
    """A tenth of the largest singular value, whatever the noise."""
    s = np.linalg.svd(np.asarray(M, dtype=float), compute_uv=False)
    return int(np.sum(s > 0.1 * s[0]))


@register(
    "ch01.rank_under_noise",
    reference=rank_under_noise,
    wrong=[
        _noise_numpy_default,
        _noise_std_as_tol,
        _noise_sqrt_max,
        _noise_no_roundoff,
        _noise_relative,
    ],
)
def _check_rank_under_noise(candidate) -> None:
    for m, n, svals, sigma, seed in _NOISY:
        M = _noisy_case(m, n, svals, sigma, seed)
        original = M.copy()
        what = (
            f"a {m}x{n} matrix of rank {len(svals)} plus noise of std {sigma:g}"
            if sigma
            else f"an exact {m}x{n} matrix of rank {len(svals)} (noise_std=0)"
        )
        got = as_number(f"for {what} the result", candidate(M, sigma), integer=True)
        if not np.array_equal(M, original):
            fail(f"your function changed its input ({what}); work on a copy")
        if got == len(svals):
            continue
        s = np.linalg.svd(M, compute_uv=False)
        edge = sigma * (math.sqrt(m) + math.sqrt(n))
        if sigma == 0:
            hint = (
                "with no noise only round-off is left (singular values ~1e-15 * sigma_1): "
                "count it as zero, e.g. with numpy's default tolerance"
            )
        elif got > len(svals):
            hint = (
                f"noise alone has singular values up to about noise_std * (sqrt(m) + "
                f"sqrt(n)) = {edge:.3g} here; the first one you should not count is "
                f"{s[len(svals)]:.3g}"
            )
        else:
            hint = (
                f"the smallest signal singular value is {s[len(svals) - 1]:.3g}, "
                f"{s[len(svals) - 1] / edge:.1f} times the noise edge noise_std * (sqrt(m) "
                f"+ sqrt(n)) = {edge:.3g}; your threshold is too high"
            )
        fail(f"for {what} it returned {got}, expected {len(svals)}: {hint}")


# ---- a low-rank matrix as B @ A ------------------------------------------------------------------


def _factors_full_svd(M, tol=None):
    U, s, Vh = np.linalg.svd(np.asarray(M, dtype=float), full_matrices=False)
    return U * s, Vh


def _factors_no_sigma(M, tol=None):
    M = np.asarray(M, dtype=float)
    r = numerical_rank(M, tol)
    U, s, Vh = np.linalg.svd(M, full_matrices=False)
    return U[:, :r], Vh[:r]


def _factors_swapped(M, tol=None):
    B, A = low_rank_factors(M, tol)
    return A, B


def _factors_one_more(M, tol=None):
    M = np.asarray(M, dtype=float)
    r = min(numerical_rank(M, tol) + 1, min(M.shape))
    U, s, Vh = np.linalg.svd(M, full_matrices=False)
    return U[:, :r] * s[:r], Vh[:r]


_FACTOR_CASES = [
    ((6, 5, 2), 1.0, 0.0, None),
    ((5, 9, 1), 1.0, 0.0, None),
    ((7, 7, 7), 1.0, 0.0, None),
    ((4, 6, 0), 1.0, 0.0, None),
    ((10, 8, 3), 1e-9, 0.0, None),
    ((12, 10, 4), 1.0, 1e-9, 1e-6),
    ((9, 12, 3), 1e6, 0.0, None),
]


@register(
    "ch01.low_rank_factors",
    reference=low_rank_factors,
    wrong=[_factors_full_svd, _factors_no_sigma, _factors_swapped, _factors_one_more],
)
def _check_low_rank_factors(candidate) -> None:
    for i, ((m, n, r), scale, noise, tol) in enumerate(_FACTOR_CASES):
        M = random_low_rank(m, n, r, seed=50 + i, noise=noise) * scale
        original = M.copy()
        what = f"a {m}x{n} matrix of rank {r}" + (
            f" (entries scaled by {scale:g})" if scale != 1 else ""
        )
        if noise:
            what += f" plus noise of size {noise:g}, tol={tol:g}"
        got = candidate(M, tol) if tol is not None else candidate(M)
        if not np.array_equal(M, original):
            fail(f"your function changed its input ({what}); work on a copy")
        if not (isinstance(got, tuple) and len(got) == 2):
            fail(f"for {what} it returned {type(got).__name__}; return a pair (B, A)")
        B, A = (np.asarray(x, dtype=float) for x in got)
        if B.shape != (m, r) or A.shape != (r, n):
            fail(
                f"for {what}: B has shape {B.shape} and A {A.shape}; expected B ({m}, {r}) and "
                f"A ({r}, {n}): r = {r} columns in B and r rows in A, so that B @ A is {m}x{n} "
                f"and holds r(m + n) = {r * (m + n)} numbers"
            )
        err = float(np.linalg.norm(B @ A - M)) if M.size else 0.0
        allowed = (1e-6 if noise else 1e-9) * max(float(np.linalg.norm(M)), 1e-300)
        if err > allowed:
            fail(
                f"for {what}: ||B @ A - M||_F = {err:.3g}, relative {err / np.linalg.norm(M):.3g}; "
                "B @ A should rebuild M (each column of M is a combination of B's columns, with "
                "the coefficients in that column of A)"
            )
