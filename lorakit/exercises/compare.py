"""Comparers for exercise checkers: precise messages for shapes, dtypes, values and gradients,
and :func:`build_module`, which builds a learner's layer class and checks its parameters.

Each helper raises :class:`ExerciseFailure` with a message a learner can act on (what was expected,
what came, where the largest error is). They are re-exported by :mod:`lorakit.exercises.core`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


class ExerciseFailure(Exception):
    """Raised by a checker: the learner's object is wrong; the message says how."""


def fail(message: str) -> None:
    """Raise :class:`ExerciseFailure` with ``message``."""
    raise ExerciseFailure(message)


def _fmt_shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def to_tensor(what: str, value: Any) -> torch.Tensor:
    """``value`` as a tensor (NumPy arrays are converted); anything else fails with its type."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise ExerciseFailure(f"{what}: expected a tensor, got {type(value).__name__}")


def assert_shape(what: str, value: Any, shape: Sequence[int]) -> None:
    """Fail unless ``value`` (tensor or array) has exactly ``shape``."""
    got = tuple(to_tensor(what, value).shape)
    if got != tuple(shape):
        fail(f"{what}: expected shape {_fmt_shape(shape)}, got {_fmt_shape(got)}")


def assert_close(
    what: str,
    got: Any,
    expected: Any,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    check_dtype: bool = True,
) -> None:
    """Fail unless ``got`` matches ``expected`` in type, shape, dtype and values.

    The value test is ``|got - expected| <= atol + rtol * |expected|`` elementwise; the message
    gives the largest absolute error and where it is.
    """
    exp = to_tensor(what + " (reference)", expected).detach()
    val = to_tensor(what, got)
    assert_shape(what, val, exp.shape)
    val = val.detach()
    if check_dtype and val.dtype != exp.dtype:
        fail(f"{what}: expected dtype {exp.dtype}, got {val.dtype}")
    val, exp = val.to("cpu", torch.float64), exp.to("cpu", torch.float64)
    if not torch.isfinite(val).all():
        fail(f"{what}: contains NaN or inf")
    err = (val - exp).abs()
    bad = err > atol + rtol * exp.abs()
    if bad.any():
        idx = int(err.flatten().argmax())
        pos = tuple(int(i) for i in np.unravel_index(idx, tuple(err.shape))) if err.dim() else ()
        fail(
            f"{what}: values differ from the reference — largest error {err.max().item():.3g} at "
            f"index {pos} (got {val.flatten()[idx].item():.6g}, "
            f"expected {exp.flatten()[idx].item():.6g}); "
            f"{int(bad.sum())} of {bad.numel()} entries out of tolerance"
        )


def assert_equal(what: str, got: Any, expected: Any) -> None:
    """Fail unless ``got == expected`` (for ints, strings, tuples...); bools are not ints here."""
    if isinstance(got, bool) != isinstance(expected, bool) or got != expected:
        fail(f"{what}: expected {expected!r}, got {got!r}")


def assert_grad(what: str, param: torch.Tensor, expect: str) -> None:
    """Check the gradient of ``param`` after ``backward()``.

    ``expect`` is ``"none"`` (frozen: no gradient at all), ``"nonzero"`` (a gradient with some
    non-zero entry) or ``"zero"`` (a gradient that exists and is all zero).
    """
    if expect not in ("none", "nonzero", "zero"):
        raise ValueError(f"expect must be 'none', 'nonzero' or 'zero', got {expect!r}")
    grad = param.grad
    if expect == "none":
        if param.requires_grad or grad is not None:
            fail(
                f"{what} should be frozen (requires_grad=False, no gradient), but it "
                + ("has requires_grad=True" if param.requires_grad else "received a gradient")
            )
        return
    if grad is None:
        fail(
            f"{what} received no gradient (requires_grad={param.requires_grad}); "
            "it should be trained"
        )
    nonzero = bool((grad != 0).any())
    if expect == "nonzero" and not nonzero:
        fail(f"{what}: its gradient is all zero, so it would never change during training")
    if expect == "zero" and nonzero:
        fail(
            f"{what}: its gradient should be zero, but its largest entry is "
            f"{grad.abs().max().item():.3g}"
        )


def as_number(what: str, value: Any, integer: bool = False) -> int | float:
    """``value`` as a Python number, where the learner may return any numeric scalar.

    Accepted: ``int``, ``float``, NumPy scalars (``np.int64``, ``np.float32``...), and 0-dim (or
    one-element) NumPy arrays and torch tensors. With ``integer=True`` the value must be whole
    (``12.0`` is accepted as 12). A ``bool``, a string, a list or a larger array fails with a
    message that names the type.
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.detach().cpu().reshape(()).item()
    elif isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        shape = f" of shape {tuple(value.shape)}" if hasattr(value, "shape") else ""
        fail(f"{what} should be a number, got {type(value).__name__}{shape} ({value!r:.60})")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            fail(f"{what} should be a whole number, got {value!r}")
        return int(value)
    return value


def check_int_cases(name: str, candidate: Any, cases: Sequence[tuple[tuple, int]]) -> None:
    """For each ``(args, expected)``, ``candidate(*args)`` must equal the whole number ``expected``.

    Any integer-valued scalar is accepted (``int``, ``np.int64``, a 0-dim tensor; see
    :func:`as_number`).
    """
    for args, expected in cases:
        what = f"{name}{args}"
        assert_equal(what, as_number(what, candidate(*args), integer=True), expected)


def assert_number(
    what: str, got: Any, expected: float, atol: float = 1e-9, rtol: float = 1e-7
) -> float:
    """Fail unless the learner's scalar ``got`` is within ``atol + rtol * |expected|`` of
    ``expected``; returns it as a float.

    ``got`` may be any numeric scalar (:func:`as_number`); the message is
    :func:`assert_close`'s (the error, what came and what was expected, or NaN/inf).
    """
    value = float(as_number(what, got))
    assert_close(
        what,
        torch.tensor(value, dtype=torch.float64),
        torch.tensor(float(expected), dtype=torch.float64),
        atol=atol,
        rtol=rtol,
    )
    return value


def build_module(candidate: Any, args: Sequence[Any], params: Sequence[str]) -> torch.nn.Module:
    """``candidate(*args)`` for a learner's layer class, with each of ``params`` checked to be
    an ``nn.Parameter`` of the new module (a plain tensor attribute never reaches an optimizer).

    Fails if ``candidate`` is not a subclass of ``nn.Module`` or a parameter is missing.
    """
    if not (isinstance(candidate, type) and issubclass(candidate, torch.nn.Module)):
        fail(f"expected a class (a subclass of nn.Module), got {type(candidate).__name__}")
    module = candidate(*args)
    found = dict(module.named_parameters())
    for name in params:
        if name in found:
            continue
        if hasattr(module, name):
            fail(
                f"{name} is not an nn.Parameter of the layer, so an optimizer would never see "
                f"it; wrap it: self.{name} = nn.Parameter(...)"
            )
        fail(f"the layer has no nn.Parameter {name}; create self.{name} = nn.Parameter(...)")
    return module
