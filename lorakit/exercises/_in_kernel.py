"""The grader's side inside the kernel of a notebook being graded.

The grader loads this file by path (under a random module name) before the notebook's first cell
and calls :func:`install`: after every cell, the objects the course's exercises name
(``lora_forward``, ``LoRAFromScratch``, ...) are remembered when a cell of the notebook bound them
(lorakit's own objects are skipped, so a later ``from lorakit... import lora_forward`` does not
count as the learner's answer). After the last cell the grader calls :func:`recheck` once per
exercise: it imports a fresh ``lorakit.exercises`` from the grader's private copy of the package
(so a notebook that replaced ``check`` or edited lorakit in memory changes nothing), runs the
reference checker on the remembered object and writes the outcome as JSON to a file the grader
named, which nothing the notebook prints can forge.

Only the standard library is imported at module level: loading this file must not import lorakit
before the notebook does.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

_MISSING = object()
_recorder: Recorder | None = None
_core: Any = None


def _from_lorakit(obj: Any) -> bool:
    """True for lorakit's own functions and classes (the reference is not the learner's answer)."""
    try:
        module = getattr(obj, "__module__", None)
        if not isinstance(module, str):
            module = getattr(type(obj), "__module__", "")
        return module == "lorakit" or module.startswith("lorakit.")
    except Exception:  # noqa: BLE001 -- an object whose attributes raise is not lorakit's
        return False


class Recorder:
    """Remembers, after each cell, the latest notebook-made object bound to each exercise's name."""

    def __init__(self, shell: Any, objects: dict[str, str]) -> None:
        self.shell, self.objects = shell, dict(objects)
        self.captured: dict[str, tuple[Any, int | None]] = {}

    def after_cell(self, result: Any = None) -> None:
        ns = self.shell.user_ns
        for exercise, name in self.objects.items():
            obj = ns.get(name, _MISSING)
            if obj is _MISSING or _from_lorakit(obj):
                continue
            previous = self.captured.get(exercise)
            if previous is None or previous[0] is not obj:
                self.captured[exercise] = (obj, getattr(result, "execution_count", None))


def install(shell: Any, objects: dict[str, str]) -> None:
    """Start remembering the exercises' objects (``{exercise: object name}``) after every cell."""
    global _recorder
    _recorder = Recorder(shell, objects)
    shell.events.register("post_run_cell", _recorder.after_cell)


def _fresh_core(package_parent: str) -> Any:
    """``lorakit.exercises.core`` imported anew from ``package_parent`` (the grader's copy)."""
    global _core
    if _core is not None:
        return _core
    for name in [m for m in sys.modules if m == "lorakit" or m.startswith("lorakit.")]:
        del sys.modules[name]
    sys.path.insert(0, package_parent)
    importlib.invalidate_caches()
    try:
        core = importlib.import_module("lorakit.exercises.core")
    finally:
        sys.path.remove(package_parent)
    where = Path(core.__file__).resolve()
    if not where.is_relative_to(Path(package_parent).resolve()):
        raise RuntimeError(
            f"lorakit was imported from {where.parent}, not from the grader's copy "
            f"in {package_parent}; something in the notebook's folder or kernel "
            "shadows the package"
        )
    _core = core
    return core


def recheck(exercise: str, out_path: str, package_parent: str) -> None:
    """Check the remembered object of ``exercise`` with the reference checker; write JSON."""
    result: dict[str, Any] = {"name": exercise, "passed": False}
    try:
        captured = _recorder.captured.get(exercise) if _recorder is not None else None
        core = _fresh_core(package_parent)
        if captured is None:
            result["defined"] = False
        else:
            reason = core.explain(exercise, captured[0])
            result.update(defined=True, passed=reason is None, reason=reason, cell=captured[1])
    except BaseException as exc:  # noqa: BLE001 -- an interrupt (timeout) included: report it
        result["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    tmp = f"{out_path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(tmp, out_path)
