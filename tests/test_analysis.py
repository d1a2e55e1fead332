"""lorakit.analysis: subspace similarity, ΔW against W, and the paper's parameter counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lorakit import analysis as an

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _gauss(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_a_matrix_is_fully_similar_to_itself():
    A = _gauss(8, 64)
    for i in range(1, 9):
        assert an.subspace_similarity(A, A, i, i) == pytest.approx(1.0, abs=1e-12)
    # nested subspaces: the top-i directions lie inside the top-j ones
    torch.testing.assert_close(
        an.subspace_similarity_grid(A, A), torch.ones(8, 8, dtype=torch.float64)
    )


def test_similarity_is_between_0_and_1_and_matches_the_grid():
    A1, A2 = _gauss(8, 40, seed=1), _gauss(16, 40, seed=2)
    grid = an.subspace_similarity_grid(A1, A2)
    assert grid.shape == (8, 16)
    assert float(grid.min()) >= 0.0 and float(grid.max()) <= 1.0 + 1e-12
    for i, j in [(1, 1), (3, 7), (8, 16), (8, 2)]:
        assert an.subspace_similarity(A1, A2, i, j) == pytest.approx(float(grid[i - 1, j - 1]))
    # for i = r1 = 8 and j = k the second subspace is everything: φ = 1
    assert an.subspace_similarity(A1, _gauss(40, 40, seed=3), 8, 40) == pytest.approx(1.0)


def test_rotating_the_rows_of_A_changes_nothing():
    A1, A2 = _gauss(6, 30, seed=4), _gauss(10, 30, seed=5)
    R, _ = torch.linalg.qr(_gauss(6, 6, seed=6))
    torch.testing.assert_close(
        an.subspace_similarity_grid(R @ A1, A2), an.subspace_similarity_grid(A1, A2)
    )
    # right-singular vectors do not see the row space's basis, only its singular structure
    assert an.subspace_similarity(R @ A1, A1, 6, 6) == pytest.approx(1.0)


def test_orthogonal_subspaces_give_zero():
    k = 20
    mix = _gauss(4, 4, seed=7)
    A1 = mix @ torch.eye(k, dtype=torch.float64)[:4]  # spans e1..e4
    A2 = _gauss(6, 6, seed=8) @ torch.eye(k, dtype=torch.float64)[10:16]  # spans e11..e16
    assert float(an.subspace_similarity_grid(A1, A2).abs().max()) < 1e-12


def test_random_subspaces_sit_at_the_chance_level():
    """E[φ] = max(i, j) / k for independent random subspaces (derivation in the module
    docstring).
    """
    k, trials = 64, 150
    for i, j in [(2, 4), (8, 8), (4, 16)]:
        values = [
            an.subspace_similarity(_gauss(i, k, seed=2 * t), _gauss(j, k, seed=2 * t + 1), i, j)
            for t in range(trials)
        ]
        expected = an.random_similarity_expected(i, j, k)
        assert np.mean(values) == pytest.approx(expected, rel=0.1), (i, j)


def test_numpy_input_and_float32_work():
    A = np.random.default_rng(0).standard_normal((4, 12)).astype(np.float32)
    assert an.subspace_similarity(A, A, 4, 2) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    "A1, A2, i, j, match",
    [
        (torch.ones(5), torch.ones(3, 5), 1, 1, "2-D"),
        (torch.randn(3, 5), torch.randn(3, 6), 1, 1, "same number of columns"),
        (torch.randn(3, 5), torch.randn(3, 5), 0, 1, "positive integer"),
        (torch.randn(3, 5), torch.randn(3, 5), 4, 1, "rank 3"),
        (torch.randn(3, 5), torch.randn(3, 5), 1, 2.0, "positive integer"),
        (torch.randn(4, 2) @ torch.randn(2, 9), torch.randn(3, 9), 3, 1, "rank 2"),
        (torch.full((2, 3), float("nan")), torch.randn(2, 3), 1, 1, "NaN"),
    ],
)
def test_bad_input_is_explained(A1, A2, i, j, match):
    with pytest.raises(ValueError, match=match):
        an.subspace_similarity(A1, A2, i, j)


def _with_spectrum(d, k, s, seed):
    U, _ = torch.linalg.qr(_gauss(d, d, seed=seed))
    V, _ = torch.linalg.qr(_gauss(k, k, seed=seed + 1))
    S = torch.zeros(d, k, dtype=torch.float64)
    S[range(len(s)), range(len(s))] = torch.tensor(s, dtype=torch.float64)
    return U @ S @ V.T, U, V


def test_projection_norms_and_amplification_on_a_known_matrix():
    s = [10.0, 8.0, 6.0, 4.0, 2.0, 1.0]
    W, U, V = _with_spectrum(8, 6, s, seed=3)
    # ΔW of rank 2 along W's 5th and 6th singular directions (which W barely uses)
    dW = 7.0 * torch.outer(U[:, 4], V[:, 4]) + 3.0 * torch.outer(U[:, 5], V[:, 5])
    norms = an.projection_norms(W, dW, r=2)
    assert norms["delta"] == pytest.approx(np.hypot(2.0, 1.0))
    assert norms["weight"] == pytest.approx(np.hypot(10.0, 8.0))  # the Ky Fan maximum
    assert norms["delta"] <= norms["random"] <= norms["weight"]
    assert norms["dW_norm"] == pytest.approx(np.hypot(7.0, 3.0))
    assert norms["W_norm"] == pytest.approx(float(np.linalg.norm(s)))
    assert an.amplification_factor(W, dW, 2) == pytest.approx(np.hypot(7, 3) / np.hypot(2, 1))
    assert an.projection_norms(W, dW, 2, seed=1)["random"] == pytest.approx(
        an.projection_norms(W, dW, 2, seed=1)["random"]
    )


def test_amplification_is_infinite_when_W_lacks_the_directions():
    W = torch.zeros(4, 4, dtype=torch.float64)
    W[0, 0] = 1.0
    dW = torch.zeros(4, 4, dtype=torch.float64)
    dW[3, 3] = 2.0
    assert an.amplification_factor(W, dW, 1) == float("inf")


@pytest.mark.parametrize(
    "W, dW, r, match",
    [
        (torch.randn(4, 5), torch.randn(5, 4), 1, "same shape"),
        (torch.randn(6, 6), torch.randn(6, 2) @ torch.randn(2, 6), 3, "rank 2"),
        (torch.randn(6, 6), torch.randn(6, 6), 0, "positive integer"),
    ],
)
def test_projection_errors(W, dW, r, match):
    with pytest.raises(ValueError, match=match):
        an.projection_norms(W, dW, r)
    with pytest.raises(ValueError, match=match):
        an.amplification_factor(W, dW, r)


def test_the_papers_parameter_counts():
    M, S, G3 = an.GPT2_MEDIUM, an.GPT2_SMALL, an.GPT3_175B
    assert an.lora_params(2 * M.n_layer, M.d_model, 4) == 393_216  # GPT-2 M, Wq and Wv, r = 4
    assert an.lora_params(2 * S.n_layer, S.d_model, 4) == 147_456
    assert an.lora_params(2 * G3.n_layer, G3.d_model, 4) == 18_874_368  # "about 18M"
    assert an.adapter_params(24, 1024, 8, L_ln=24) == 24 * (2 * 1024 * 8 + 8 + 1024) + 2 * 24 * 1024
    assert an.prefix_embed_params(1024, 10, 10) == 20_480
    assert an.prefix_layer_params(24, 1024, 10, 10) == 491_520
    assert {s.name for s in an.SHAPES.values()} >= {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"}
    with pytest.raises(ValueError, match=">= 0"):
        an.lora_params(-1, 1024, 4)
