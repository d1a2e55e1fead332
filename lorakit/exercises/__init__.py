"""Exercises that check themselves.

In a chapter, a check cell calls::

    lorakit.exercises.check("ch03.lora_forward", lora_forward)

which prints one line, ``PASS ch03.lora_forward`` or ``FAIL ch03.lora_forward: <what was wrong>``.
Instructors write student versions and grade returned notebooks from the command line::

    python -m lorakit.exercises student chapters/ --out student/
    python -m lorakit.exercises grade returned/*.ipynb --json grades.json

Chapter modules (``chNN.py``) register their exercises with :func:`register`; they are imported
lazily, the first time the registry is used.
"""

from lorakit.exercises.core import (
    CheckResult,
    Exercise,
    ExerciseFailure,
    check,
    explain,
    get,
    load_errors,
    names,
    register,
    registry,
)

__all__ = [
    "CheckResult",
    "Exercise",
    "ExerciseFailure",
    "check",
    "explain",
    "get",
    "load_errors",
    "names",
    "register",
    "registry",
]
