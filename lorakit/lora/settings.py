"""The LoRA settings and their checks, in one place.

:class:`lorakit.LoRAConfig`, the layers and the adapter files all take the same settings (``r``,
``alpha``, ``dropout``, ``init``, ``rslora``, ``bias``) and check them here, so that a bad value
gives the same message wherever it comes in.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

INITS = ("gaussian", "kaiming")
BIAS_MODES = ("none", "all", "lora_only")


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


# name -> (is the value valid?, what it must be, a hint for the fix)
_RULES = {
    "r": (_positive_int, "a positive integer", "r = 4 or 8 is typical."),
    "alpha": (
        lambda v: v is None or (_number(v) and v > 0),
        "a number > 0",
        "the paper uses alpha = 32 with r = 4 for GPT-2 (or leave it unset for alpha = r).",
    ),
    "dropout": (
        lambda v: _number(v) and 0.0 <= v < 1.0,
        "a number in [0, 1)",
        "the paper uses 0.1 for GPT-2.",
    ),
    "init": (lambda v: v in INITS, f"one of {INITS}", "'gaussian' is the paper's choice."),
    "rslora": (lambda v: isinstance(v, bool), "True or False", ""),
    "bias": (lambda v: v in BIAS_MODES, f"one of {BIAS_MODES}", "'none' trains A and B only."),
}
SETTINGS = tuple(_RULES)


def setting_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the setting ``name`` ("must be ..., got ...") or None."""
    ok, want, _ = _RULES[name]
    try:
        fine = bool(ok(value))
    except TypeError:  # e.g. an unhashable value tested against a tuple of names
        fine = False
    return None if fine else f"must be {want}, got {value!r}"


def check_settings(**values: Any) -> None:
    """Raise ``ValueError`` for the first setting (``r=``, ``alpha=``, ...) with a bad value.

    The message names the setting, what it must be, the value given and a hint.
    """
    for name, value in values.items():
        problem = setting_problem(name, value)
        if problem is not None:
            hint = _RULES[name][2]
            raise ValueError(f"{name} {problem}" + (f"; {hint}" if hint else "."))


def check_rank(r: int, d: int, k: int, where: str = "this layer") -> None:
    """Raise ``ValueError`` unless ``r`` is an integer with ``1 <= r <= min(d, k)``."""
    check_settings(r=r)
    if r > min(d, k):
        raise ValueError(
            f"LoRA rank r={r} is larger than min(d, k) = min({d}, {k}) = {min(d, k)} for {where}: "
            "BA could never have that rank. Choose r <= min(d, k) (LoRA is useful when "
            "r << min(d, k))."
        )
