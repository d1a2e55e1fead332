"""Tests of lorakit.linalg: rank, low-rank approximation, energy, factor counts, SubspaceModel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lorakit import linalg
from lorakit.linalg import (
    SubspaceModel,
    approx_error,
    energy_kept,
    factor_params,
    low_rank_approx,
    numerical_rank,
    outer_product_sum,
    random_low_rank,
    rank_by_elimination,
    rank_for_energy,
    storage_for_rank,
)

FIRST_EXAMPLES = [
    ([[1, 2, 3], [4, 5, 6], [7, 8, 9]], 2),
    ([[1, 0], [0, 1]], 2),
    ([[1, 2], [2, 4]], 1),
]


@pytest.mark.parametrize("M, rank", FIRST_EXAMPLES)
@pytest.mark.parametrize("fn", [rank_by_elimination, numerical_rank])
def test_first_examples(fn, M, rank):
    assert fn(M) == rank
    assert fn(np.array(M, dtype=float)) == rank
    assert fn(torch.tensor(M, dtype=torch.float32)) == rank


def test_special_matrices():
    assert rank_by_elimination(np.zeros((3, 4))) == 0
    assert rank_by_elimination(np.zeros((0, 4))) == 0
    assert rank_by_elimination([[0, 1], [1, 0]]) == 2  # needs a row swap
    assert rank_by_elimination([[0, 0, 1], [0, 0, 2]]) == 1  # leading zero columns
    assert numerical_rank(np.zeros((3, 4))) == 0


def test_elimination_agrees_with_numpy_on_random_low_rank():
    rng = np.random.default_rng(0)
    for seed in range(300):
        m, n = (int(x) for x in rng.integers(1, 40, size=2))
        r = int(rng.integers(0, min(m, n) + 1))
        M = random_low_rank(m, n, r, seed=seed) * 10.0 ** rng.uniform(-6, 6)
        expected = np.linalg.matrix_rank(M)
        assert expected == r
        assert rank_by_elimination(M) == expected, (seed, m, n, r)
        assert numerical_rank(M) == expected


def test_elimination_does_not_modify_input():
    M = random_low_rank(5, 4, 2, seed=1)
    before = M.copy()
    rank_by_elimination(M)
    np.testing.assert_array_equal(M, before)


def test_noise_makes_full_rank_and_tolerance_recovers():
    M = random_low_rank(10, 8, 2, seed=3, noise=1e-10)
    assert numerical_rank(M) == 8
    assert np.linalg.matrix_rank(M) == 8
    assert numerical_rank(M, tol=1e-6) == 2
    assert rank_by_elimination(M, tol=1e-6) == 2


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shape", [(12, 7), (7, 12), (9, 9)])
def test_eckart_young_mirsky(seed, shape):
    M = np.random.default_rng(seed).standard_normal(shape)
    s = np.linalg.svd(M, compute_uv=False)
    for k in range(min(shape) + 1):
        Mk = low_rank_approx(M, k)
        assert Mk.shape == M.shape
        assert np.linalg.matrix_rank(Mk) == k
        fro = np.linalg.norm(M - Mk)
        assert np.isclose(fro, np.sqrt(np.sum(s[k:] ** 2)), atol=1e-10)
        assert np.isclose(fro, approx_error(M, k), atol=1e-10)
        spectral = np.linalg.norm(M - Mk, ord=2)
        expected = s[k] if k < len(s) else 0.0
        assert np.isclose(spectral, expected, atol=1e-10)
        assert np.isclose(approx_error(M, k, norm="2"), expected, atol=1e-10)
        assert np.isclose(1 - energy_kept(s, k), (fro / np.linalg.norm(M)) ** 2, atol=1e-12)


def test_low_rank_approx_beats_other_rank_k_matrices():
    rng = np.random.default_rng(7)
    M = rng.standard_normal((10, 8))
    best = np.linalg.norm(M - low_rank_approx(M, 3))
    for _ in range(50):
        other = rng.standard_normal((10, 3)) @ rng.standard_normal((3, 8))
        assert np.linalg.norm(M - other) > best


def test_low_rank_approx_torch_keeps_type():
    M = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    Mk = low_rank_approx(M, 2)
    assert isinstance(Mk, torch.Tensor) and Mk.dtype == torch.float64
    np.testing.assert_allclose(Mk.numpy(), low_rank_approx(M.numpy(), 2), atol=1e-12)
    np.testing.assert_allclose(low_rank_approx(M, 5).numpy(), M.numpy(), atol=1e-12)


def test_energy_and_rank_for_energy():
    s = np.array([3.0, 2.0, 1.0, 0.0])  # squares 9, 4, 1, 0 of 14
    assert energy_kept(s, 0) == 0.0
    assert np.isclose(energy_kept(s, 1), 9 / 14)
    assert np.isclose(energy_kept(s[::-1], 1), 9 / 14)  # order does not matter
    assert energy_kept(s, 3) == 1.0
    assert rank_for_energy(s, 9 / 14) == 1
    assert rank_for_energy(s, 0.9) == 2
    assert rank_for_energy(s, 1.0) == 3
    assert rank_for_energy(np.zeros(3), 0.5) == 0


def test_outer_product_sum():
    rng = np.random.default_rng(0)
    us, vs = rng.standard_normal((3, 6)), rng.standard_normal((3, 4))
    M = outer_product_sum(us, vs)
    assert M.shape == (6, 4)
    np.testing.assert_allclose(M, us.T @ vs, atol=1e-12)
    assert rank_by_elimination(M) == 3
    T = outer_product_sum(torch.tensor(us), torch.tensor(vs))
    np.testing.assert_allclose(T.numpy(), M, atol=1e-12)


def test_factor_params_and_storage():
    assert factor_params(12288, 12288, 4) == (150_994_944, 98_304)
    assert factor_params(1024, 512, 8) == (524_288, 12_288)
    assert storage_for_rank(10, 20, 3) == 3 * 31


def test_subspace_model_trains_only_z():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    x = torch.randn(16, 4)
    before = net(x).detach()
    sub = SubspaceModel(net, d=5, seed=1)
    assert [n for n, p in sub.named_parameters() if p.requires_grad] == ["z"]
    torch.testing.assert_close(sub(x), before)  # z = 0 reproduces theta0
    assert sub.P.shape == (sum(p.numel() for p in net.parameters()), 5)
    torch.testing.assert_close(sub.P.norm(dim=0), torch.ones(5, dtype=sub.P.dtype))
    y = torch.randint(0, 2, (16,))
    opt = torch.optim.SGD(sub.parameters(), lr=0.5)
    first = torch.nn.functional.cross_entropy(sub(x), y).item()
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(sub(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < first
    assert all(p.grad is None for p in net.parameters())


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [rank_by_elimination, numerical_rank, linalg.singular_values])
def test_rank_rejects_bad_matrices(fn):
    with pytest.raises(ValueError, match="2-D"):
        fn(np.ones(3))
    with pytest.raises(ValueError, match="2-D"):
        fn(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        fn([[1.0, float("nan")], [0.0, 1.0]])
    with pytest.raises(TypeError, match="numeric matrix"):
        fn([["a", "b"], ["c", "d"]])


def test_low_rank_approx_rejects_bad_input():
    M = np.ones((4, 3))
    for k in (-1, 4, 1.5, True):
        with pytest.raises(ValueError, match="0 <= k <= min"):
            low_rank_approx(M, k)
    with pytest.raises(ValueError, match="2-D"):
        low_rank_approx(np.ones(3), 1)
    with pytest.raises(ValueError, match="NaN"):
        low_rank_approx(np.array([[np.nan, 1.0], [1.0, 1.0]]), 1)
    with pytest.raises(ValueError, match="0 <= k <= min"):
        approx_error(M, 4)
    with pytest.raises(ValueError, match="'fro' or '2'"):
        approx_error(M, 1, norm="nuc")


def test_other_helpers_reject_bad_input():
    with pytest.raises(ValueError, match="0 <= k"):
        energy_kept([1.0, 0.5], 3)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        energy_kept([[1.0]], 1)
    with pytest.raises(ValueError, match=">= 0"):
        energy_kept([1.0, -1.0], 1)
    with pytest.raises(ValueError, match="fraction"):
        rank_for_energy([1.0], 1.5)
    with pytest.raises(ValueError, match="same r"):
        outer_product_sum(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="positive integer"):
        factor_params(0, 4, 1)
    with pytest.raises(ValueError, match="exceeds min"):
        factor_params(4, 3, 4)
    with pytest.raises(ValueError, match="0 <= k"):
        storage_for_rank(3, 3, 4)
    with pytest.raises(ValueError, match="0 <= r"):
        random_low_rank(3, 3, 4)
    with pytest.raises(ValueError, match="tol"):
        numerical_rank(np.eye(2), tol=-1.0)
    with pytest.raises(ValueError, match="subspace dimension"):
        SubspaceModel(torch.nn.Linear(2, 2), d=0)
