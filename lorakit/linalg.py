"""Rank, SVD and low-rank approximation: the tested helpers of chapters 1 and 2.

LoRA (Hu et al. 2021, §4.1) rests on one hypothesis: the update ``ΔW`` that fine-tuning makes to a
pretrained weight has a low "intrinsic rank", so it can be written as a product ``B A`` of two thin
factors. This module holds the linear algebra behind that sentence: rank (by elimination and from
singular values), the best rank-k approximation (Eckart–Young–Mirsky), the parameter count of a
factorisation, and :class:`SubspaceModel` (from :mod:`lorakit.subspace`) for the
intrinsic-dimension demo (Li et al. 2018; Aghajanyan et al. 2020).

Matrix arguments accept NumPy arrays, torch tensors and nested lists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from lorakit.subspace import SubspaceModel  # chapter 2's intrinsic-dimension wrapper


def _as_matrix(M, name: str = "M") -> np.ndarray:
    """``M`` as a finite float64 NumPy matrix of shape (m, n), or a clear ValueError/TypeError."""
    if isinstance(M, torch.Tensor):
        M = M.detach().to("cpu", torch.float64).numpy()
    try:
        A = np.array(M, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name} must be a numeric matrix (numpy array, torch tensor or nested "
            f"list of numbers); got {type(M).__name__}: {err}"
        ) from None
    if A.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (m, n); got shape {A.shape}. "
            "Reshape it, e.g. M.reshape(m, n), or pass one matrix at a time."
        )
    if not np.all(np.isfinite(A)):
        raise ValueError(f"{name} contains NaN or inf; rank is undefined. Clean the input first.")
    return A


def singular_values(M) -> np.ndarray:
    """Singular values of ``M`` (m, n), largest first, shape (min(m, n),), as float64 NumPy."""
    return np.linalg.svd(_as_matrix(M), compute_uv=False)


def rank_by_elimination(M, tol: float | None = None) -> int:
    """Rank of a matrix by Gaussian elimination with complete pivoting.

    Each step takes the largest entry (in absolute value) of the block not yet eliminated as the
    pivot, moves it to the diagonal by a row and a column swap, and clears the entries below it.
    The rank is the number of steps made before every remaining entry is ``<= tol``. Complete
    (rather than partial, row-only) pivoting makes the count reliable in floating point.

    Parameters
    ----------
    M : array_like, shape (m, n)
        The matrix (NumPy array, CPU torch tensor or nested list). It is not modified.
    tol : float, optional
        Entries of absolute value ``<= tol`` count as zero. Default ``max(m, n) * eps * ||M||_F``:
        ``numpy.linalg.matrix_rank``'s ``max(m, n) * eps * sigma_max`` with the Frobenius norm,
        which bounds ``sigma_max`` from above and needs no SVD.

    Returns
    -------
    int
        The number of pivots, i.e. the number of linearly independent rows (and columns).
    """
    try:
        A = np.array(M, dtype=np.float64)  # a copy: elimination works in place
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"M must be a numeric matrix (array, CPU tensor, nested list): {err}"
        ) from None
    if A.ndim != 2:
        raise ValueError(f"M must be 2-D (m, n); got shape {A.shape}.")
    if not np.all(np.isfinite(A)):
        raise ValueError("M contains NaN or inf; rank is undefined. Clean the input first.")
    m, n = A.shape
    if tol is None:
        tol = max(m, n) * np.finfo(np.float64).eps * np.linalg.norm(A)
    rank = 0
    while rank < min(m, n):
        block = np.abs(A[rank:, rank:])
        i, j = np.unravel_index(np.argmax(block), block.shape)
        if block[i, j] <= tol:
            break  # what is left is zero up to round-off
        A[[rank, rank + i]] = A[[rank + i, rank]]  # row swap
        A[:, [rank, rank + j]] = A[:, [rank + j, rank]]  # column swap
        factors = A[rank + 1 :, rank] / A[rank, rank]
        A[rank + 1 :, rank:] -= np.outer(factors, A[rank, rank:])
        rank += 1
    return rank


def numerical_rank(M, tol: float | None = None) -> int:
    """Number of singular values of ``M`` (m, n) above ``tol``.

    ``tol`` defaults to ``max(m, n) * eps * sigma_max``, exactly as ``numpy.linalg.matrix_rank``.
    Float noise of size 1e-10 sits far above that default, so a noisy low-rank matrix counts as full
    rank; pass a ``tol`` a little above the noise level to see the rank that matters.
    """
    A = _as_matrix(M)
    if A.size == 0:
        return 0
    s = np.linalg.svd(A, compute_uv=False)
    if tol is None:
        tol = max(A.shape) * np.finfo(np.float64).eps * s[0]
    elif tol < 0:
        raise ValueError(f"tol must be >= 0; got {tol}.")
    return int(np.sum(s > tol))


def rank_under_noise(M, noise_std: float) -> int:
    """Rank of the signal in ``M = L + N``: ``L`` low rank, ``N`` i.i.d. noise of known size.

    An m×n matrix of independent ``N(0, noise_std²)`` entries has singular values up to about
    ``noise_std * (sqrt(m) + sqrt(n))`` (the edge of the Marchenko–Pastur law), so a direction of
    ``L`` is visible only above that edge. Counted: singular values above 1.25 times the edge
    (a margin for the edge's wobble in small matrices), and, with no noise, above round-off.

    Parameters
    ----------
    M : array_like, shape (m, n)
    noise_std : float
        Standard deviation of the noise entries, ``>= 0`` (0: an exact matrix).

    Returns
    -------
    int
    """
    A = np.array(M, dtype=np.float64)
    if A.ndim != 2 or not np.all(np.isfinite(A)):
        raise ValueError(f"M must be a finite 2-D matrix (m, n); got shape {A.shape}.")
    if (
        isinstance(noise_std, bool)
        or not isinstance(noise_std, (int, float, np.number))
        or not math.isfinite(noise_std)
        or noise_std < 0
    ):
        raise ValueError(f"noise_std must be a finite number >= 0; got {noise_std!r}.")
    m, n = A.shape
    s = np.linalg.svd(A, compute_uv=False)
    if s.size == 0:
        return 0
    roundoff = max(m, n) * np.finfo(np.float64).eps * s[0]  # numpy's default tolerance
    edge = noise_std * (math.sqrt(m) + math.sqrt(n))  # where the noise's singular values end
    return int(np.sum(s > max(1.25 * edge, roundoff)))


def low_rank_factors(M, tol: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Write a matrix of (numerical) rank r as ``B @ A`` with ``r(m + n)`` numbers: the converse
    of ``rank(BA) <= r``.

    ``B`` is made of r columns of ``M`` itself, taken left to right whenever a column is not a
    combination of those already taken; ``A`` holds the coefficients that rebuild every column
    of ``M`` from them (least squares).

    Parameters
    ----------
    M : array_like, shape (m, n)
    tol : float, optional
        Singular values ``<= tol`` count as zero (as in :func:`numerical_rank`; default: round-off).

    Returns
    -------
    B : np.ndarray, shape (m, r)
    A : np.ndarray, shape (r, n)
        ``r = numerical_rank(M, tol)`` and ``B @ A`` equals ``M`` up to what the tolerance drops.
    """
    M = np.array(M, dtype=np.float64)
    if M.ndim != 2 or not np.all(np.isfinite(M)):
        raise ValueError(f"M must be a finite 2-D matrix (m, n); got shape {M.shape}.")
    m, n = M.shape
    if tol is None and M.size:
        tol = max(m, n) * np.finfo(np.float64).eps * np.linalg.norm(M, 2)
    cols: list[int] = []
    for j in range(n):  # keep column j if it adds a direction to the columns kept so far
        if numerical_rank(M[:, cols + [j]], tol) > len(cols):
            cols.append(j)
    B = M[:, cols]
    if not cols:
        return B, np.zeros((0, n))
    A = np.linalg.lstsq(B, M, rcond=None)[0]  # (r, n): the best coefficients, column by column
    return B, A


def low_rank_approx(M, k: int):
    """Best rank-``k`` approximation of ``M`` (Eckart–Young–Mirsky): the truncated SVD.

    Parameters
    ----------
    M : np.ndarray or torch.Tensor, shape (m, n)
    k : int
        The rank to keep, ``0 <= k <= min(m, n)``.

    Returns
    -------
    np.ndarray or torch.Tensor, shape (m, n)
        ``U[:, :k] @ diag(s[:k]) @ Vh[:k]``, of the same type (and for a tensor, dtype and device)
        as ``M``. No matrix of rank <= k is closer to ``M`` in the Frobenius or the spectral norm.
    """
    lib = torch if isinstance(M, torch.Tensor) else np
    if lib is np:
        M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2:
        raise ValueError(f"M must be 2-D (m, n); got shape {tuple(M.shape)}.")
    if not lib.all(lib.isfinite(M)):
        raise ValueError("M contains NaN or inf; its SVD is undefined. Clean the input first.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= min(M.shape):
        raise ValueError(
            f"k must be an integer with 0 <= k <= min(m, n) = {min(M.shape)}; got {k!r}."
        )
    U, s, Vh = lib.linalg.svd(M, full_matrices=False)
    return (U[:, :k] * s[:k]) @ Vh[:k]


def approx_error(M, k: int, norm: str = "fro") -> float:
    """``||M - M_k||`` for the best rank-k approximation ``M_k``, from the singular values alone.

    Eckart–Young–Mirsky: the Frobenius error is ``sqrt(sum_{i>k} sigma_i^2)`` and the spectral
    (``norm="2"``) error is ``sigma_{k+1}`` (0 when ``k = min(m, n)``).
    """
    s = singular_values(M)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= len(s):
        raise ValueError(f"k must be an integer with 0 <= k <= min(m, n) = {len(s)}; got {k!r}.")
    if norm == "fro":
        return float(np.sqrt(np.sum(s[k:] ** 2)))
    if norm == "2":
        return float(s[k]) if k < len(s) else 0.0
    raise ValueError(f"norm must be 'fro' or '2'; got {norm!r}.")


def energy_kept(singular_values, k: int) -> float:
    """Fraction of ``||M||_F^2`` that the top ``k`` singular values hold:
    ``sum_{i<k} s_i^2 / sum s_i^2``.

    ``singular_values`` has shape (n,), non-negative; sorted or not, the top k are used.
    By Eckart–Young–Mirsky, ``1 - energy_kept(s, k)`` is the relative squared error of ``M_k``.
    """
    s = np.asarray(singular_values, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or np.any(s < 0) or not np.all(np.isfinite(s)):
        raise ValueError("singular_values must be a non-empty 1-D array of finite values >= 0.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= s.size:
        raise ValueError(f"k must be an integer with 0 <= k <= {s.size}; got {k!r}.")
    power = np.sort(s)[::-1] ** 2
    total = power.sum()
    return float(power[:k].sum() / total) if total > 0 else 1.0


def rank_for_energy(singular_values, fraction: float) -> int:
    """Smallest ``k`` with ``energy_kept(singular_values, k) >= fraction``
    (``0 < fraction <= 1``).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], e.g. 0.9 for 90%; got {fraction!r}.")
    s = np.asarray(singular_values, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or np.any(s < 0) or not np.all(np.isfinite(s)):
        raise ValueError("singular_values must be a non-empty 1-D array of finite values >= 0.")
    s = np.sort(s)[::-1]
    total = np.sum(s**2)
    if total == 0:
        return 0
    kept = np.cumsum(s**2) / total  # kept[k-1] = energy of the top k
    return int(np.searchsorted(kept, fraction - 1e-12) + 1)


def outer_product_sum(us, vs):
    """``sum_i outer(us[i], vs[i])``: a matrix of rank <= r built from r rank-1 pieces.

    Parameters
    ----------
    us : array_like, shape (r, m)
        r column vectors, one per row.
    vs : array_like, shape (r, n)

    Returns
    -------
    np.ndarray, shape (m, n)
        Equal to ``us.T @ vs`` (for torch inputs, a tensor).
    """
    lib = torch if isinstance(us, torch.Tensor) else np
    if lib is np:
        us, vs = np.asarray(us, dtype=np.float64), np.asarray(vs, dtype=np.float64)
    if us.ndim != 2 or vs.ndim != 2 or us.shape[0] != vs.shape[0]:
        raise ValueError(
            f"us (r, m) and vs (r, n) must be 2-D with the same r; got shapes "
            f"{tuple(us.shape)} and {tuple(vs.shape)}."
        )
    M = lib.zeros((us.shape[1], vs.shape[1]), dtype=us.dtype)
    for u, v in zip(us, vs):
        M = M + lib.outer(u, v)
    return M


def factor_params(d: int, k: int, r: int) -> tuple[int, int]:
    """Parameters of a d×k matrix stored whole, and as factors ``B`` (d, r) and ``A`` (r, k).

    Returns ``(full, factored)``, the numbers stored either way; ``r`` must satisfy
    ``1 <= r <= min(d, k)``. GPT-3's ``d = k = 12288`` at ``r = 4``: 150,994,944 vs 98,304.
    """
    for name, value in (("d", d), ("k", k), ("r", r)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    if r > min(d, k):
        raise ValueError(
            f"r={r} exceeds min(d, k)={min(d, k)}: such factors save nothing; pick r <= min(d, k)."
        )
    return d * k, r * (d + k)


def storage_for_rank(m: int, n: int, k: int) -> int:
    """Numbers stored for a rank-k SVD of an m×n matrix: ``U_k`` (m, k), ``s_k`` (k,),
    ``V_k`` (n, k).
    """
    if min(m, n) < 1 or not 0 <= k <= min(m, n):
        raise ValueError(f"need m, n >= 1 and 0 <= k <= min(m, n); got m={m}, n={n}, k={k}.")
    return k * (m + n + 1)


def random_low_rank(m: int, n: int, r: int, seed: int = 0, noise: float = 0.0) -> np.ndarray:
    """A seeded random m×n matrix of rank exactly r (Gaussian factors), plus optional Gaussian
    noise.
    """
    if not 0 <= r <= min(m, n):
        raise ValueError(f"r must satisfy 0 <= r <= min(m, n) = {min(m, n)}; got {r}.")
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((m, r)) @ rng.standard_normal((r, n))
    return M + noise * rng.standard_normal((m, n)) if noise else M


__all__: Sequence[str] = [
    "singular_values",
    "rank_by_elimination",
    "numerical_rank",
    "rank_under_noise",
    "low_rank_factors",
    "low_rank_approx",
    "approx_error",
    "energy_kept",
    "rank_for_energy",
    "outer_product_sum",
    "factor_params",
    "storage_for_rank",
    "random_low_rank",
    "SubspaceModel",
]
