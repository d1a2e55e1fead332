"""Grade returned notebooks: run each one and collect its check lines (DESIGN §7).

Every notebook is executed from a fresh kernel with ``allow_errors=True``, so an exception in
one cell (a learner's bug) does not stop the cells after it. The ``PASS name`` / ``FAIL name: ...``
lines printed by :func:`lorakit.exercises.check` are collected per exercise; an exercise whose check
cell printed nothing (it raised, e.g. because the exercise cell crashed and the name was never
defined, or the notebook stopped) is reported as failing, with the reason.

Note: grading trusts what the notebook prints; it is feedback for learners, not an exam proctor.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from lorakit.exercises.student import check_names

_LINE_RE = re.compile(r"^(PASS|FAIL) (ch\d\d\.\w+)(?:: (.*))?$")


@dataclass
class ExerciseResult:
    """The outcome of one exercise in one notebook."""

    name: str
    passed: bool
    reason: str | None = None


@dataclass
class NotebookResult:
    """The outcome of one notebook: its exercises, any cell errors, and a notebook-level error."""

    notebook: str
    exercises: list[ExerciseResult] = field(default_factory=list)
    cell_errors: list[dict] = field(default_factory=list)
    error: str | None = None
    wall_s: float = 0.0

    @property
    def passed(self) -> int:
        return sum(e.passed for e in self.exercises)

    @property
    def total(self) -> int:
        return len(self.exercises)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(passed=self.passed, total=self.total)
        return out


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def _error(cell) -> str | None:
    for o in cell.get("outputs", []):
        if o.get("output_type") == "error":
            return f"{o.get('ename', 'Error')}: {o.get('evalue', '')}".strip()
    return None


def collect(nb: nbformat.NotebookNode, stopped: str | None = None) -> list[ExerciseResult]:
    """Results per exercise from an executed notebook (see module docstring)."""
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    lines: dict[str, ExerciseResult] = {}
    for _, cell in code:
        for line in _stdout(cell).splitlines():
            m = _LINE_RE.match(line.strip())
            if m:
                lines[m.group(2)] = ExerciseResult(m.group(2), m.group(1) == "PASS", m.group(3))
    expected = list(dict.fromkeys(n for _, c in code for n in check_names(c.source)))
    results = []
    for name in expected + [n for n in lines if n not in expected]:
        if name in lines:
            results.append(lines[name])
            continue
        where = next((i, c) for i, c in code if name in check_names(c.source))
        err = _error(where[1])
        if err:
            reason = f"the check cell (cell {where[0]}) raised {err}"
        elif not where[1].get("outputs") and where[1].get("execution_count") is None:
            reason = f"the check cell (cell {where[0]}) never ran" + (f": {stopped}" if stopped else "")
        else:
            reason = f"the check cell (cell {where[0]}) printed no PASS/FAIL line"
        earlier = next(((i, e) for i, c in code if i < where[0] and (e := _error(c))), None)
        if earlier and (not err or "is not defined" in err):
            reason += f"; an earlier cell ({earlier[0]}) raised {earlier[1]}"
        results.append(ExerciseResult(name, False, " ".join(reason.split())[:400]))
    return results


def grade_notebook(path: str | Path, timeout: float = 600, kernel: str | None = None) -> NotebookResult:
    """Execute one returned notebook (in its own folder) and grade it; never raises for bad work."""
    from nbclient import NotebookClient

    path = Path(path)
    result = NotebookResult(notebook=str(path))
    start = time.perf_counter()
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # a corrupt or foreign file is a result, not a crash
        result.error = f"could not read the notebook: {type(exc).__name__}: {exc}"
        return result
    stopped = None
    client = NotebookClient(nb, timeout=timeout, allow_errors=True,
                            kernel_name=kernel or "python3",
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    try:
        client.execute()
    except Exception as exc:  # timeout, dead kernel: grade what ran
        stopped = f"the notebook stopped early ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
        result.error = stopped
    result.wall_s = round(time.perf_counter() - start, 2)
    result.cell_errors = [{"cell": i, "error": e} for i, c in enumerate(nb.cells)
                          if c.cell_type == "code" and (e := _error(c))]
    result.exercises = collect(nb, stopped)
    return result


def grade(paths: list[str | Path], timeout: float = 600, kernel: str | None = None,
          preset: str | None = None) -> list[NotebookResult]:
    """Grade several notebooks; ``preset`` sets ``LORAKIT_PRESET`` for their kernels.

    Raises
    ------
    FileNotFoundError
        If a path does not exist (checked before anything runs).
    """
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"notebook(s) not found: {', '.join(missing)}; check the paths")
    old = os.environ.get("LORAKIT_PRESET")
    if preset:
        os.environ["LORAKIT_PRESET"] = preset
    try:
        return [grade_notebook(p, timeout, kernel) for p in paths]
    finally:
        if preset:
            if old is None:
                os.environ.pop("LORAKIT_PRESET", None)
            else:
                os.environ["LORAKIT_PRESET"] = old


def format_table(results: list[NotebookResult]) -> str:
    """A plain-text table: one row per notebook and exercise, then a score line per notebook."""
    rows = [("notebook", "exercise", "result", "reason")]
    for res in results:
        nb = Path(res.notebook).name
        if not res.exercises:
            rows.append((nb, "-", "-", res.error or "no exercises found"))
        for ex in res.exercises:
            rows.append((nb, ex.name, "PASS" if ex.passed else "FAIL", ex.reason or ""))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{a:<{w0}}  {b:<{w1}}  {c:<6}  {d}".rstrip() for a, b, c, d in rows]
    for res in results:
        note = f"; {res.error}" if res.error and res.exercises else ""
        lines.append(f"{Path(res.notebook).name}: {res.passed}/{res.total} passed "
                     f"({len(res.cell_errors)} cell(s) with errors){note}")
    return "\n".join(lines)


def write_json(results: list[NotebookResult], path: str | Path) -> None:
    """Write the grades as JSON: ``{"notebooks": [...], "summary": {...}}``."""
    data = {
        "notebooks": [r.to_dict() for r in results],
        "summary": {"notebooks": len(results), "passed": sum(r.passed for r in results),
                    "total": sum(r.total for r in results)},
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
