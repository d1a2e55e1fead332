"""Exercises that check themselves: the registry and ``check``.

Each chapter with exercises has a module ``lorakit/exercises/chNN.py`` that registers them::

    from lorakit.exercises.core import ExerciseFailure, register, assert_close

    @register("ch03.lora_forward", reference=lora_forward, wrong=[_no_scaling, _r_over_alpha])
    def _check_lora_forward(candidate) -> None:
        x = torch.randn(4, 12, generator=torch.Generator().manual_seed(0))
        ...
        assert_close("h", candidate(x, W0, A, B, alpha), lora_forward(x, W0, A, B, alpha))

The decorated function is the *checker*: it receives the learner's object (a function or a class),
exercises it on seeded inputs and raises :class:`ExerciseFailure` with a message that says what was
wrong (a shape, a dtype, the largest error, a gradient that should be zero...) on the first problem.
It returns ``None`` when everything is right. Exceptions raised by the learner's own code may simply
propagate: :func:`check` turns them into feedback.

``register`` arguments:

* ``reference`` -- the solution; the tests prove that it passes.
* ``wrong`` -- known-wrong versions (typical mistakes); the tests prove that each one fails.
* ``stub`` -- optional zero-argument factory returning what a student version defines before the
  learner writes anything (the tests prove that it fails). By default it is a function that raises
  ``NotImplementedError``; give one for class exercises, e.g. ``stub=lambda: _StubLayer``.

Chapter modules are discovered automatically: every ``lorakit/exercises/chNN.py`` (and
``chNN_topic.py``, for a chapter whose exercises fill more than one module) is imported the first
time the registry is used.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import pkgutil
import re
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lorakit.exercises.compare import (  # noqa: F401  (re-exported for chapter modules)
    ExerciseFailure,
    assert_close,
    assert_equal,
    assert_grad,
    assert_shape,
    fail,
    to_tensor,
)

NOT_IMPLEMENTED = (
    "not implemented yet — replace the `raise NotImplementedError` in the exercise cell"
)
_MAX_REASON = 400
_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # lorakit/


@dataclass(frozen=True)
class Exercise:
    """One registered exercise.

    Attributes
    ----------
    name : str
        ``"chNN.short_name"``, the name the check cell passes to :func:`check`.
    checker : callable
        ``checker(candidate) -> None``; raises :class:`ExerciseFailure` when the candidate is wrong.
    reference : object
        The solution (a function or a class).
    wrong : tuple
        Known-wrong versions; each must fail the checker.
    stub_factory : callable or None
        Returns what a student version defines before any work; ``None``: a raising function.
    """

    name: str
    checker: Callable[[Any], None]
    reference: Any
    wrong: tuple[Any, ...] = field(default_factory=tuple)
    stub_factory: Callable[[], Any] | None = None

    def stub(self) -> Any:
        """The object a student version of the chapter holds before the learner writes code."""
        if self.stub_factory is not None:
            return self.stub_factory()

        def stub(*args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError(f"Exercise {self.name}: write this part")

        return stub


_REGISTRY: dict[str, Exercise] = {}
_LOAD_ERRORS: dict[str, str] = {}
_LOADED = False
_NAME_RE = re.compile(r"^ch\d\d\.[A-Za-z_][A-Za-z0-9_]*$")
_MODULE_RE = re.compile(r"^ch\d\d(_[a-z]+)?$")  # ch03.py, and more of chapter 3 in ch03_training.py


def register(
    name: str,
    reference: Any,
    wrong: Sequence[Any] = (),
    stub: Callable[[], Any] | None = None,
) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """Decorator registering ``checker`` as the check of exercise ``name`` (see module docstring).

    Raises
    ------
    ValueError
        If ``name`` is not of the form ``chNN.name`` or is already registered.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"exercise name {name!r} must look like 'ch03.lora_forward' (chapter number, a dot, "
            "a Python identifier)"
        )

    def decorate(checker: Callable[[Any], None]) -> Callable[[Any], None]:
        if name in _REGISTRY and _REGISTRY[name].checker is not checker:
            raise ValueError(
                f"exercise {name!r} is registered twice; give one of them another name"
            )
        _REGISTRY[name] = Exercise(name, checker, reference, tuple(wrong), stub)
        return checker

    return decorate


def _load_all() -> None:
    """Import every ``lorakit/exercises/chNN.py`` once; remember modules that fail to import."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    package = importlib.import_module("lorakit.exercises")
    for info in pkgutil.iter_modules(package.__path__):
        if not _MODULE_RE.match(info.name):
            continue
        try:
            importlib.import_module(f"lorakit.exercises.{info.name}")
        except Exception as exc:  # one broken chapter must not hide the others
            _LOAD_ERRORS[info.name] = f"{type(exc).__name__}: {exc}"


def registry() -> dict[str, Exercise]:
    """All registered exercises by name (imports the chapter modules on first use)."""
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def names() -> list[str]:
    """Sorted names of every registered exercise."""
    return list(registry())


def load_errors() -> dict[str, str]:
    """Chapter modules that failed to import, with the error (empty when all is well)."""
    _load_all()
    return dict(_LOAD_ERRORS)


def get(name: str) -> Exercise:
    """The exercise called ``name``.

    Raises
    ------
    KeyError
        If no exercise has that name; the message lists the known names.
    """
    found = registry().get(name)
    if found is None:
        known = ", ".join(names()) or "none"
        broken = "".join(
            f"; chapter module {m} failed to import ({e})" for m, e in _LOAD_ERRORS.items()
        )
        raise KeyError(f"unknown exercise {name!r}; known exercises: {known}{broken}")
    return found


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


def _where(exc: BaseException) -> str:
    """' (in forward, line 7)' for the innermost frame of the learner's code, if any."""
    learner = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not Path(frame.filename).resolve().is_relative_to(_PACKAGE_DIR)
        and "site-packages" not in frame.filename
        and "/lib/python" not in frame.filename
    ]
    if not learner:
        return ""
    frame = learner[-1]
    return f" (in {frame.name}, line {frame.lineno})"


def explain(name: str, candidate: Any) -> str | None:
    """Run the check of ``name`` on ``candidate``; ``None`` if it passes, else the reason
    (one line).

    Never raises (except ``KeyboardInterrupt``). The global RNG states of torch and NumPy are
    restored afterwards, and anything the learner's code prints is swallowed so that the check
    prints one line only.
    """
    try:
        exercise = get(name)
    except KeyError as exc:
        return _one_line(exc.args[0])
    if candidate is None or candidate is Ellipsis:
        return "got None; pass the function or class you wrote, e.g. check(name, my_function)"
    np_state = np.random.get_state()
    sink = io.StringIO()
    try:
        with (
            torch.random.fork_rng(devices=[]),
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
            torch.enable_grad(),
        ):
            torch.manual_seed(0)
            exercise.checker(candidate)
    except ExerciseFailure as exc:
        return _one_line(str(exc))
    except NotImplementedError:
        return NOT_IMPLEMENTED
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the learner's code failed: that is feedback, not a crash
        message = str(exc) or "(no message)"
        return _one_line(f"your code raised {type(exc).__name__}{_where(exc)}: {message}")
    finally:
        np.random.set_state(np_state)
    return None


class CheckResult:
    """What :func:`check` returns: true when the check passed; compares equal to that bool.

    It shows nothing when it is the last expression of a notebook cell (Jupyter would otherwise
    display ``True`` under the PASS line; a trailing ``;`` does not hide it under every runner).
    """

    __slots__ = ("name", "passed", "reason")

    def __init__(self, name: str, passed: bool, reason: str | None = None) -> None:
        self.name, self.passed, self.reason = name, bool(passed), reason

    def __bool__(self) -> bool:
        return self.passed

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CheckResult):
            return self.passed == other.passed
        return self.passed == other if isinstance(other, bool) else NotImplemented

    def __hash__(self) -> int:
        return hash(self.passed)

    def __repr__(self) -> str:
        return f"CheckResult({self.name!r}, passed={self.passed})"

    def _ipython_display_(self) -> None:  # the printed line is the whole display
        return None


def check(name: str, candidate: Any) -> CheckResult:
    """Check the learner's ``candidate`` for exercise ``name``; print exactly one line.

    Prints ``PASS name`` or ``FAIL name: <what was wrong>`` and returns whether it passed (a
    :class:`CheckResult`, truthy on PASS, equal to ``True``/``False``). Never raises: errors in the
    learner's code (``NotImplementedError`` from a stub included) and an unknown exercise name
    become the FAIL message.

    Examples
    --------
    >>> lorakit.exercises.check("ch03.lora_forward", lora_forward)  # doctest: +SKIP
    PASS ch03.lora_forward
    """
    reason = explain(str(name), candidate)
    print(f"PASS {name}" if reason is None else f"FAIL {name}: {reason}", flush=True)
    return CheckResult(str(name), reason is None, reason)
