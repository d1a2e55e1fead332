"""Exercises of chapter 1 (rank, full rank, low rank)."""

from __future__ import annotations

import numpy as np

from lorakit.exercises.core import ExerciseFailure, register
from lorakit.linalg import factor_params, outer_product_sum, random_low_rank, rank_by_elimination

# ---- rank by Gaussian elimination ---------------------------------------------------------------


def _rank_cases() -> list[tuple[str, np.ndarray]]:
    """Named matrices with known rank: the first examples, traps for pivoting, seeded random ones."""
    cases = [
        ("[[1,2,3],[4,5,6],[7,8,9]]", np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=float)),
        ("the 2x2 identity", np.eye(2)),
        ("[[1,2],[2,4]]", np.array([[1, 2], [2, 4]], dtype=float)),
        ("[[0,1],[1,0]] (needs a row swap)", np.array([[0, 1], [1, 0]], dtype=float)),
        ("[[0,0,1],[0,0,2]] (zero leading columns)", np.array([[0, 0, 1], [0, 0, 2]], dtype=float)),
        ("the 3x4 zero matrix", np.zeros((3, 4))),
    ]
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
        A[rank + 1:, rank:] -= np.outer(A[rank + 1:, rank] / A[rank, rank], A[rank, rank:])
        rank += 1
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
    wrong=[_rank_off_by_one, _rank_exact_zero_test, _rank_no_pivot_search, _rank_in_place],
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
        if isinstance(got, (bool, np.bool_)) or not isinstance(got, (int, np.integer)):
            raise ExerciseFailure(
                f"for {label} it returned {got!r} of type {type(got).__name__}; return an int "
                "(the number of pivots)"
            )
        if int(got) != expected:
            hint = ""
            if int(got) > expected:
                hint = (" (too many pivots: round-off of size ~1e-15 must count as zero; compare "
                        "the pivot's absolute value with tol)")
            raise ExerciseFailure(f"for {label} it returned rank {got}, numpy.linalg.matrix_rank "
                                  f"says {expected}{hint}")


# ---- a rank-r matrix from r outer products --------------------------------------------------------


def _outer_transposed(us, vs):
    return np.asarray(vs, dtype=float).T @ np.asarray(us, dtype=float)


def _outer_first_only(us, vs):
    return np.outer(us[0], vs[0])


def _outer_elementwise(us, vs):
    return np.asarray(us, dtype=float) * np.asarray(vs, dtype=float)


@register(
    "ch01.outer_product_sum",
    reference=outer_product_sum,
    wrong=[_outer_transposed, _outer_first_only, _outer_elementwise],
)
def _check_outer_product_sum(candidate) -> None:
    rng = np.random.default_rng(7)
    for r, m, n in [(1, 4, 3), (3, 6, 5), (4, 5, 9)]:
        us, vs = rng.standard_normal((r, m)), rng.standard_normal((r, n))
        got = np.asarray(candidate(us.copy(), vs.copy()))
        what = f"with r={r} pairs, us of shape ({r}, {m}) and vs of shape ({r}, {n})"
        if got.shape != (m, n):
            raise ExerciseFailure(f"{what}: expected a matrix of shape ({m}, {n}), got shape "
                                  f"{got.shape}; entry (i, j) is sum_t us[t][i] * vs[t][j]")
        expected = us.T @ vs
        err = float(np.max(np.abs(got - expected)))
        if not np.allclose(got, expected, atol=1e-9):
            rank = int(np.linalg.matrix_rank(got))
            raise ExerciseFailure(f"{what}: values differ from sum_t outer(us[t], vs[t]) by up to "
                                  f"{err:.3g}; your matrix has rank {rank}, expected {r}")


# ---- parameters of a matrix versus its factors ----------------------------------------------------


def _params_square_only(d, k, r):
    return d * k, 2 * r * d


def _params_product(d, k, r):
    return d * k, r * d * k


def _params_swapped(d, k, r):
    return r * (d + k), d * k


@register(
    "ch01.factor_params",
    reference=factor_params,
    wrong=[_params_square_only, _params_product, _params_swapped],
)
def _check_factor_params(candidate) -> None:
    for d, k, r in [(12288, 12288, 4), (1024, 4096, 8), (768, 3072, 1), (10, 6, 6), (5, 7, 2)]:
        expected = (d * k, r * (d + k))
        got = candidate(d, k, r)
        try:
            got_tuple = tuple(int(x) for x in got)
        except TypeError:
            raise ExerciseFailure(f"factor_params({d}, {k}, {r}) returned {got!r}; return a pair "
                                  "(full, factored)") from None
        if got_tuple != expected:
            raise ExerciseFailure(
                f"factor_params({d}, {k}, {r}) returned {got_tuple}, expected {expected}: the whole "
                f"matrix holds d*k numbers; B (d, r) and A (r, k) hold r*d + r*k"
            )
