"""Every registered exercise: the reference passes, the stub fails, each known-wrong version fails.

Exercises are discovered from the registry (every ``lorakit/exercises/chNN.py``), so a chapter that
adds an exercise is covered without editing this file. Also tests ``check`` itself and the helpers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lorakit.exercises import core
from lorakit.exercises.core import (
    NOT_IMPLEMENTED,
    ExerciseFailure,
    assert_close,
    assert_equal,
    assert_grad,
    assert_shape,
    check,
    explain,
    register,
)

REGISTRY = core.registry()
NAMES = sorted(REGISTRY)
WRONG = [(name, i) for name in NAMES for i in range(len(REGISTRY[name].wrong))]


def _one_line(capsys) -> str:
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.endswith("\n"), (
        f"check must print exactly one line, got {out!r}"
    )
    return out.rstrip("\n")


def test_every_chapter_module_imports():
    assert core.load_errors() == {}


def test_chapter_three_exercises_are_registered():
    assert {"ch03.lora_forward", "ch03.lora_layer", "ch03.merge_lora", "ch03.unmerge_lora"} <= set(
        NAMES
    )


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes(name, capsys):
    assert check(name, REGISTRY[name].reference) == True  # noqa: E712
    assert _one_line(capsys) == f"PASS {name}"


@pytest.mark.parametrize("name", NAMES)
def test_stub_fails_without_raising(name, capsys):
    assert check(name, REGISTRY[name].stub()) == False  # noqa: E712
    assert _one_line(capsys) == f"FAIL {name}: {NOT_IMPLEMENTED}"


@pytest.mark.parametrize("name", NAMES)
def test_each_exercise_has_known_wrong_versions(name):
    assert len(REGISTRY[name].wrong) >= 1, f"{name} has no known-wrong version to prove its checker"


@pytest.mark.parametrize("name,index", WRONG)
def test_known_wrong_version_fails(name, index, capsys):
    wrong = REGISTRY[name].wrong[index]
    assert not check(name, wrong), f"{name}: wrong version {wrong!r} passed the checker"
    line = _one_line(capsys)
    assert line.startswith(f"FAIL {name}: ") and NOT_IMPLEMENTED not in line
    assert len(line) > len(f"FAIL {name}: ") + 10  # says what was wrong


def test_unknown_name_fails_and_lists_known_names(capsys):
    assert not check("ch03.no_such_exercise", len)
    line = _one_line(capsys)
    assert line.startswith("FAIL ch03.no_such_exercise: unknown exercise")
    assert "ch03.lora_forward" in line


@pytest.mark.parametrize(
    "candidate,expected",
    [
        (None, "got None"),
        (42, "your code raised TypeError"),
        ("lora_forward", "your code raised TypeError"),
    ],
)
def test_odd_candidates_fail_cleanly(candidate, expected, capsys):
    assert not check("ch03.lora_forward", candidate)
    assert expected in _one_line(capsys)


def test_learner_exception_names_type_message_and_line(capsys):
    def lora_forward(x, W0, A, B, alpha):
        raise ValueError("my\nmultiline bug")

    assert not check("ch03.lora_forward", lora_forward)
    line = _one_line(capsys)
    assert "your code raised ValueError (in lora_forward, line" in line
    assert "my multiline bug" in line


def test_system_exit_in_learner_code_is_feedback(capsys):
    def lora_forward(x, W0, A, B, alpha):
        raise SystemExit(3)

    assert not check("ch03.lora_forward", lora_forward)
    assert "SystemExit" in _one_line(capsys)


def test_learner_prints_are_swallowed(capsys):
    ref = REGISTRY["ch03.lora_forward"].reference

    def noisy(*args):
        print("debugging...")
        return ref(*args)

    assert check("ch03.lora_forward", noisy)
    assert _one_line(capsys) == "PASS ch03.lora_forward"


def test_check_result_is_truthy_and_shows_nothing_in_jupyter(capsys):
    passed = check("ch03.lora_forward", REGISTRY["ch03.lora_forward"].reference)
    failed = check("ch03.lora_forward", None)
    capsys.readouterr()
    assert passed and not failed and passed == True and failed == False  # noqa: E712
    assert failed.reason.startswith("got None") and passed.reason is None
    assert passed._ipython_display_() is None and "passed=True" in repr(passed)


def test_check_restores_the_random_state():
    torch.manual_seed(123)
    np.random.seed(123)
    expected_t, expected_n = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    explain("ch03.lora_layer", REGISTRY["ch03.lora_layer"].reference)
    assert torch.equal(torch.rand(3), expected_t)
    assert np.array_equal(np.random.rand(3), expected_n)


def test_long_reasons_are_cut_to_one_short_line():
    def lora_forward(*args):
        raise RuntimeError("x" * 5000)

    reason = explain("ch03.lora_forward", lora_forward)
    assert len(reason) <= 400 and "\n" not in reason


@pytest.mark.parametrize("bad", ["lora_forward", "ch3.x", "ch03.", "ch03.1abc", 3])
def test_register_rejects_malformed_names(bad):
    with pytest.raises(ValueError, match="must look like"):
        register(bad, reference=len)


def test_register_rejects_duplicates():
    with pytest.raises(ValueError, match="registered twice"):
        register("ch03.lora_forward", reference=len)(lambda c: None)


def test_register_and_check_a_new_exercise(capsys):
    def _checker(candidate):
        assert_equal("f(2)", candidate(2), 4)

    try:
        register("ch99.square", reference=lambda n: n * n, wrong=[lambda n: 2 * n + 1])(_checker)
        assert check("ch99.square", lambda n: n**2)
        assert not check("ch99.square", lambda n: n + 3)
        assert (
            capsys.readouterr().out.splitlines()[-1] == "FAIL ch99.square: f(2): expected 4, got 5"
        )
    finally:
        core._REGISTRY.pop("ch99.square", None)


# ----------------------------------------------------------------------------- helpers


def _message(fn, *args, **kwargs) -> str:
    with pytest.raises(ExerciseFailure) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_assert_close_reports_shape_dtype_values_and_type():
    t = torch.zeros(2, 3)
    assert "expected shape (2, 3), got (3, 2)" in _message(assert_close, "h", torch.zeros(3, 2), t)
    assert "expected dtype torch.float32, got torch.float64" in _message(
        assert_close, "h", torch.zeros(2, 3, dtype=torch.float64), t
    )
    bad = t.clone()
    bad[1, 2] = 0.5
    msg = _message(assert_close, "h", bad, t)
    assert "largest error 0.5 at index (1, 2)" in msg and "1 of 6 entries" in msg
    assert "expected a tensor, got list" in _message(assert_close, "h", [0.0], t)
    assert "NaN or inf" in _message(assert_close, "h", torch.full((2, 3), float("nan")), t)
    assert_close("h", np.zeros((2, 3), dtype=np.float32), t)  # arrays are accepted
    assert_close("h", t + 1e-7, t)


def test_assert_number_takes_any_scalar_and_names_the_error():
    from lorakit.exercises.compare import assert_number

    assert assert_number("phi", np.float32(0.5), 0.5) == 0.5
    assert assert_number("phi", torch.tensor(2.0), 2.0 + 1e-10) == 2.0  # 0-dim tensors too
    assert "largest error 0.1" in _message(assert_number, "phi", 0.6, 0.5, atol=1e-6, rtol=0)
    assert "NaN or inf" in _message(assert_number, "ppl", float("inf"), 3.0)
    assert "phi should be a number, got list" in _message(assert_number, "phi", [0.5], 0.5)


def test_build_module_checks_the_class_and_its_parameters():
    from torch import nn

    from lorakit.exercises.compare import build_module

    class Good(nn.Module):
        def __init__(self, k: int) -> None:
            super().__init__()
            self.lora_A = nn.Parameter(torch.zeros(2, k))

    class PlainTensor(nn.Module):
        def __init__(self, k: int) -> None:
            super().__init__()
            self.lora_A = torch.zeros(2, k)

    assert isinstance(build_module(Good, (3,), ("lora_A",)), Good)
    assert "expected a class (a subclass of nn.Module), got function" in _message(
        build_module, lambda k: None, (3,), ("lora_A",)
    )
    assert "lora_A is not an nn.Parameter" in _message(build_module, PlainTensor, (3,), ["lora_A"])
    assert "has no nn.Parameter lora_B" in _message(build_module, Good, (3,), ["lora_A", "lora_B"])


def test_assert_shape_and_equal():
    assert "expected shape (4,), got (5,)" in _message(assert_shape, "v", torch.zeros(5), (4,))
    assert "expected 1, got True" in _message(assert_equal, "n", True, 1)
    assert_equal("n", 3, 3)


def test_assert_grad_cases():
    frozen = torch.zeros(3)
    assert_grad("W0", frozen, "none")
    trained = torch.zeros(3, requires_grad=True)
    assert "should be frozen" in _message(assert_grad, "W0", trained, "none")
    assert "received no gradient" in _message(assert_grad, "A", trained, "nonzero")
    (trained * 0).sum().backward()
    assert "all zero" in _message(assert_grad, "A", trained, "nonzero")
    assert_grad("A", trained, "zero")
    (trained * 2).sum().backward()
    assert "should be zero" in _message(assert_grad, "A", trained, "zero")
    with pytest.raises(ValueError, match="expect must be"):
        assert_grad("A", trained, "maybe")


# ----------------------------------------------------------------------------- what checkers accept


@pytest.mark.parametrize(
    "wrap", [int, np.int64, np.int32, float, torch.tensor, np.array, lambda v: torch.tensor([v])]
)
def test_a_whole_number_may_come_as_any_numeric_scalar(wrap, capsys):
    ref = REGISTRY["ch04.lora_param_count"].reference
    assert check("ch04.lora_param_count", lambda *a: wrap(ref(*a)))
    ref_rank = REGISTRY["ch01.rank_by_elimination"].reference
    assert check("ch01.rank_by_elimination", lambda *a: wrap(ref_rank(*a)))
    ref_k = REGISTRY["ch02.rank_for_energy"].reference
    assert check("ch02.rank_for_energy", lambda *a: wrap(ref_k(*a)))


@pytest.mark.parametrize(
    "bad,expected",
    [
        (lambda *a: True, "should be a number, got bool"),
        (lambda *a: "393216", "should be a number, got str"),
        (lambda *a: [393216], "should be a number, got list"),
        (lambda *a: 393216.5, "should be a whole number"),
    ],
)
def test_what_is_not_a_whole_number_fails_with_its_type(bad, expected, capsys):
    assert not check("ch04.lora_param_count", bad)
    assert expected in _one_line(capsys)


def test_a_fraction_may_come_as_a_zero_dim_tensor(capsys):
    ref = REGISTRY["ch02.energy_kept"].reference
    assert check("ch02.energy_kept", lambda s, k: torch.tensor(ref(s, k), dtype=torch.float64))
    assert check("ch02.energy_kept", lambda s, k: np.float64(ref(s, k)))
    assert check("ch02.energy_kept", lambda s, k: np.array(ref(s, k)))


def test_low_rank_approx_is_tried_on_tensors(capsys):
    numpy_only = REGISTRY["ch02.low_rank_approx"].wrong[-1]
    assert not check("ch02.low_rank_approx", numpy_only)
    assert "for a torch tensor" in _one_line(capsys)


def test_a_first_nonzero_pivot_is_told_to_take_the_largest(capsys):
    from lorakit.exercises.ch01 import _rank_first_nonzero_pivot

    assert not check("ch01.rank_by_elimination", _rank_first_nonzero_pivot)
    line = _one_line(capsys)
    assert "first row is tiny" in line and "LARGEST entry" in line and "round-off" in line


@pytest.mark.parametrize("factor", [1.0, 1.5, 2.5])
def test_rank_under_noise_accepts_any_sensible_margin_above_the_edge(factor, capsys):
    import math

    def rank(M, noise_std):
        M = np.asarray(M, dtype=float)
        s = np.linalg.svd(M, compute_uv=False)
        edge = noise_std * (math.sqrt(M.shape[0]) + math.sqrt(M.shape[1]))
        return int(np.sum(s > max(factor * edge, max(M.shape) * np.finfo(float).eps * s[0])))

    assert check("ch01.rank_under_noise", rank)


def test_low_rank_factors_accepts_any_factorisation(capsys):
    def by_svd(M, tol=None):
        M = np.asarray(M, dtype=float)
        from lorakit.linalg import numerical_rank

        r = numerical_rank(M, tol)
        U, s, Vh = np.linalg.svd(M, full_matrices=False)
        return torch.tensor(U[:, :r] * s[:r]), Vh[:r]  # tensors and arrays alike

    assert check("ch01.low_rank_factors", by_svd)


def test_qv_lora_accepts_a_conv1d_wrapper_written_another_way(capsys):
    from lorakit.exercises.ch04 import QVLoRA

    class Sliced(QVLoRA):  # slices the output instead of concatenating an update
        def forward(self, x):
            h = self.base(x).clone()
            d = self.d
            h[..., :d] += self.scaling * (x @ self.lora_A_q.T) @ self.lora_B_q.T
            h[..., 2 * d :] += self.scaling * (x @ self.lora_A_v.T) @ self.lora_B_v.T
            return h

    assert check("ch04.qv_lora", Sliced)
