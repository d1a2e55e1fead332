"""Understanding what LoRA learns (paper §7) and counting parameters (paper §5.1).

Subspace similarity (§7.2). For two LoRA ``A`` matrices ``A1 (r1, k)`` and ``A2 (r2, k)`` (the
paper's layout: ``A`` maps the layer input, of size k, down to r), take their right-singular
vectors: ``A = U Σ Vh``, the rows of ``Vh`` (r, k), ordered by singular value. With ``U_A`` the
(k, r) matrix whose columns are those rows (the paper's "right-singular unitary matrix"), the
normalised Grassmann similarity of the top-i directions of A1 and the top-j directions of A2 is

    φ(A1, A2, i, j) = ‖U_A1[:, :i]ᵀ U_A2[:, :j]‖_F² / min(i, j)   ∈ [0, 1],

1 when one subspace contains the other, 0 when they are orthogonal. For a fixed i-dim subspace
and a uniformly random j-dim subspace of R^k, ``E[P_j] = (j/k)·I`` for the random projector, so
``E‖U_iᵀ U_j‖_F² = tr(P_i E[P_j]) = i·j/k`` and ``E[φ] = max(i, j) / k``: the chance level.

ΔW against W (§7.3). With ``U`` (d, r) and ``V`` (k, r) the top-r left- and right-singular vectors
of ``ΔW`` (the paper writes the projection as ``Uᵀ W Vᵀ`` with V stored as rows, like ``Vh``),
``‖Uᵀ W V‖_F`` measures how much of W lies in ΔW's top directions. The *amplification factor*
``‖ΔW‖_F / ‖Uᵀ W V‖_F`` says how strongly ΔW amplifies directions W already has.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

Matrix = torch.Tensor | np.ndarray


# --------------------------------------------------------------------- parameter counts (§5.1)
@dataclass(frozen=True)
class ModelShape:
    """A Transformer's depth and width: ``n_layer`` (L) blocks of width ``d_model``."""

    name: str
    n_layer: int
    d_model: int
    n_head: int


GPT2_SMALL = ModelShape("gpt2", 12, 768, 12)
GPT2_MEDIUM = ModelShape("gpt2-medium", 24, 1024, 16)
GPT2_LARGE = ModelShape("gpt2-large", 36, 1280, 20)
GPT2_XL = ModelShape("gpt2-xl", 48, 1600, 25)
GPT3_175B = ModelShape("gpt3-175b", 96, 12288, 96)
SHAPES = {s.name: s for s in (GPT2_SMALL, GPT2_MEDIUM, GPT2_LARGE, GPT2_XL, GPT3_175B)}


def _nonneg(**values: int) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {v!r}.")


def lora_params(L_hat: int, d: int, r: int) -> int:
    """LoRA: ``2·L̂·d·r`` for ``L̂`` adapted d×d matrices at rank r
    (GPT-2 M, q and v, r=4: 393,216)."""
    _nonneg(L_hat=L_hat, d=d, r=r)
    return 2 * L_hat * d * r


def adapter_params(L_adpt: int, d: int, r: int, L_ln: int = 0) -> int:
    """Adapters: ``L̂_Adpt·(2·d·r + r + d) + 2·L̂_LN·d`` (``L̂_LN`` trained LayerNorms)."""
    _nonneg(L_adpt=L_adpt, d=d, r=r, L_ln=L_ln)
    return L_adpt * (2 * d * r + r + d) + 2 * L_ln * d


def prefix_embed_params(d: int, l_p: int, l_i: int) -> int:
    """Prefix-embedding tuning: ``d·(l_p + l_i)``."""
    _nonneg(d=d, l_p=l_p, l_i=l_i)
    return d * (l_p + l_i)


def prefix_layer_params(L: int, d: int, l_p: int, l_i: int) -> int:
    """Prefix-layer tuning: ``L·d·(l_p + l_i)``."""
    _nonneg(L=L, d=d, l_p=l_p, l_i=l_i)
    return L * d * (l_p + l_i)


# --------------------------------------------------------------------- helpers
def _matrix(x: Matrix, name: str) -> tuple[torch.Tensor, float]:
    """``x`` as a float64 CPU matrix, and the machine epsilon of the dtype it came in."""
    t = torch.as_tensor(x).detach()
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {tuple(t.shape)}.")
    if not t.is_floating_point():
        t = t.double()
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf; check the training run that produced it.")
    return t.to("cpu", torch.float64), torch.finfo(t.dtype).eps


def _rank(t: torch.Tensor, eps: float) -> int:
    """Numerical rank at the precision the matrix was made in (a float32 ΔW = B A of rank r
    has float64 singular values ~1e-7·σ_max past r; they are rounding, not directions)."""
    return int(torch.linalg.matrix_rank(t, rtol=eps * max(t.shape)))


def right_singular_vectors(A: Matrix) -> torch.Tensor:
    """``U_A`` (k, r): the right-singular vectors of ``A`` (r, k) as columns, largest σ first."""
    A, _ = _matrix(A, "A")
    return torch.linalg.svd(A, full_matrices=False).Vh.T


def _bases(A1: Matrix, A2: Matrix) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    (a1, eps1), (a2, eps2) = _matrix(A1, "A1"), _matrix(A2, "A2")
    if a1.shape[1] != a2.shape[1]:
        raise ValueError(
            f"A1 {tuple(a1.shape)} and A2 {tuple(a2.shape)} must have the same number of "
            "columns k (both (r, k) LoRA A matrices of the same layer)."
        )
    return (
        torch.linalg.svd(a1, full_matrices=False).Vh.T,
        torch.linalg.svd(a2, full_matrices=False).Vh.T,
        _rank(a1, eps1),
        _rank(a2, eps2),
    )


def _check_index(i: int, rank: int, rows: int, name: str, which: str) -> None:
    if isinstance(i, bool) or not isinstance(i, int) or i < 1:
        raise ValueError(f"{name} must be a positive integer, got {i!r}.")
    if i > rank:
        raise ValueError(
            f"{name}={i} but {which} has rank {rank} ({rows} rows): only its first "
            f"{rank} right-singular vectors are determined; use {name} <= {rank}."
        )


# --------------------------------------------------------------------- subspace similarity (§7.2)
def subspace_similarity(A1: Matrix, A2: Matrix, i: int, j: int) -> float:
    """φ(A1, A2, i, j) = ‖U_A1[:, :i]ᵀ U_A2[:, :j]‖_F² / min(i, j) (paper eq. 4).

    Parameters
    ----------
    A1 : (r1, k) LoRA A matrix (torch or NumPy).
    A2 : (r2, k) LoRA A matrix of the same layer.
    i, j : how many top right-singular directions of A1 and A2 to compare, 1 <= i <= rank(A1),
        1 <= j <= rank(A2).

    Returns
    -------
    float in [0, 1]: 1 if one span contains the other, 0 if they are orthogonal.

    Raises
    ------
    ValueError
        Not 2-D, different k, NaN/inf, or i, j outside 1..rank.
    """
    U1, U2, rank1, rank2 = _bases(A1, A2)
    _check_index(i, rank1, U1.shape[1], "i", "A1")
    _check_index(j, rank2, U2.shape[1], "j", "A2")
    overlap = U1[:, :i].T @ U2[:, :j]  # (i, j)
    return float((overlap**2).sum() / min(i, j))


def subspace_similarity_grid(A1: Matrix, A2: Matrix) -> torch.Tensor:
    """φ(A1, A2, i, j) for all ``1 <= i <= rank(A1)``, ``1 <= j <= rank(A2)``.

    Returns
    -------
    torch.Tensor (rank(A1), rank(A2)), float64: entry ``[i-1, j-1]`` is φ(A1, A2, i, j).
    """
    U1, U2, rank1, rank2 = _bases(A1, A2)
    sq = (U1[:, :rank1].T @ U2[:, :rank2]) ** 2  # (rank1, rank2)
    cum = sq.cumsum(0).cumsum(1)  # [i-1, j-1] = sum over the first i rows and j columns
    i = torch.arange(1, rank1 + 1, dtype=torch.float64)[:, None]
    j = torch.arange(1, rank2 + 1, dtype=torch.float64)[None, :]
    return cum / torch.minimum(i, j)


def random_similarity_expected(i: int, j: int, k: int) -> float:
    """E[φ] for random i- and j-dim subspaces of R^k: ``max(i, j) / k`` (see module docstring)."""
    return max(i, j) / k


# --------------------------------------------------------------------- ΔW against W (§7.3)
def _top_directions(M: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    U, _, Vh = torch.linalg.svd(M, full_matrices=False)
    return U[:, :r], Vh[:r].T  # (d, r), (k, r)


def _check_pair(W: Matrix, dW: Matrix, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    (w, _), (dw, eps) = _matrix(W, "W"), _matrix(dW, "dW")
    if w.shape != dw.shape:
        raise ValueError(
            f"W {tuple(w.shape)} and dW {tuple(dw.shape)} must have the same shape "
            "(d, k); for GPT-2's Conv1D, transpose the stored (k, d) weight first."
        )
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"r must be a positive integer, got {r!r}.")
    rank = _rank(dw, eps)
    if r > rank:
        raise ValueError(
            f"r={r} but dW has rank {rank}; its directions past {rank} are not "
            f"determined. Use r <= {rank} (the LoRA rank, for dW = B A)."
        )
    return w, dw


def projection_norms(W: Matrix, dW: Matrix, r: int, seed: int = 0) -> dict[str, float]:
    """‖Uᵀ W V‖_F for U, V the top-r singular directions of ΔW, of W, and of a random matrix.

    Parameters
    ----------
    W : (d, k) pretrained weight.
    dW : (d, k) the learned update ``(α/r)·B A``.
    r : how many top directions (``1 <= r <= rank(dW)``).
    seed : seeds the random Gaussian (d, k) matrix of the control.

    Returns
    -------
    dict with ``"delta"``, ``"weight"``, ``"random"`` (the three projections, as the columns of
    the paper's Table 7), and ``"W_norm"`` = ‖W‖_F, ``"dW_norm"`` = ‖ΔW‖_F.
    """
    w, dw = _check_pair(W, dW, r)
    gen = torch.Generator().manual_seed(seed)
    rand = torch.randn(w.shape, generator=gen, dtype=torch.float64)
    out = {}
    for key, M in (("delta", dw), ("weight", w), ("random", rand)):
        U, V = _top_directions(M, r)
        out[key] = float(torch.linalg.matrix_norm(U.T @ w @ V))
    out["W_norm"] = float(torch.linalg.matrix_norm(w))
    out["dW_norm"] = float(torch.linalg.matrix_norm(dw))
    return out


def amplification_factor(W: Matrix, dW: Matrix, r: int) -> float:
    """‖ΔW‖_F / ‖Uᵀ W V‖_F with U, V the top-r singular directions of ΔW (paper §7.3).

    Returns ``inf`` when W has no component in those directions. Raises as :func:`projection_norms`.
    """
    w, dw = _check_pair(W, dW, r)
    U, V = _top_directions(dw, r)
    proj = float(torch.linalg.matrix_norm(U.T @ w @ V))
    dw_norm = float(torch.linalg.matrix_norm(dw))
    return dw_norm / proj if proj > 0 else float("inf")
