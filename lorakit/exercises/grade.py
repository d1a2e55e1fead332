"""Grade returned notebooks: run each in a fresh kernel, then check every exercise itself.

For each returned notebook the grader

1. matches it by file name to a chapter of the course and takes the exercises that chapter
   expects from the course (:mod:`lorakit.exercises.course`), never from the returned notebook;
2. clears every saved output and copies the notebook's folder (other notebooks left out) to a
   temporary working folder;
3. starts a fresh kernel there, silently installs a recorder of the exercises' objects, and runs
   every cell (an error does not stop the cells after it; a cell past ``timeout`` is interrupted
   and the next one runs);
4. checks each expected exercise itself, in that kernel, with the reference checker imported
   from a private copy of lorakit, and reads the outcome from a file named by a random token;
   the PASS/FAIL lines the notebook printed are feedback for the learner and are not read;
5. shuts the kernel down, kills its process group and any process still carrying its token, and
   deletes the working folder.

Before each notebook and after the last one, the installed lorakit's files are compared with
their SHA-256 at the start: a change (a notebook that wrote into the package) stops the grading
with :class:`GraderError`. So does a kernel name that does not exist. What is *not* isolated:
the kernel runs as the grading user, with that user's files and network; a notebook that
deliberately patches Python or IPython inside its kernel can still fool the checks run there.
Use containers for exams.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from lorakit.exercises.course import Expected, load_course, match_chapter
from lorakit.exercises.kernel import (
    TOKEN_ENV,
    GradingClient,
    changed_files,
    digest,
    package_files,
    run_and_recheck,
    write_package_copy,
)


class GraderError(RuntimeError):
    """A problem of the grading set-up, not of a learner's work; ``results`` holds what was
    graded."""

    def __init__(self, message: str, results: list | None = None) -> None:
        super().__init__(message)
        self.results = results or []


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
    chapter: str | None = None
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


def check_kernel(name: str) -> None:
    """Raise :class:`GraderError` unless a Jupyter kernel called ``name`` is installed."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    try:
        manager.get_kernel_spec(name)
    except NoSuchKernel:
        known = ", ".join(sorted(manager.find_kernel_specs())) or "none"
        raise GraderError(
            f"no Jupyter kernel named {name!r}; installed kernels: {known}. Pass "
            "--kernel with one of them (see `jupyter kernelspec list`)."
        ) from None


def _one_line(text: str, limit: int = 400) -> str:
    return " ".join(str(text).split())[:limit]


def _error(cell) -> str | None:
    for o in cell.get("outputs", []):
        if o.get("output_type") == "error":
            return _one_line(f"{o.get('ename', 'Error')}: {o.get('evalue', '')}".strip(), 200)
    return None


def _working_copy(path: Path, root: Path) -> Path:
    """A copy of the notebook's folder for the kernel to run in (notebooks and caches left out)."""
    work = root / "work"
    skip = shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints", "__pycache__")
    shutil.copytree(path.parent, work, ignore=skip, symlinks=True)
    return work


def _cleared(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


def _not_defined(e: Expected, nb, errors: dict[int, str]) -> str:
    rx = re.compile(rf"^\s*(def|class)\s+{e.obj}\b|^\s*{e.obj}\s*=", re.M)
    defining = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and rx.search(c.source)]
    reason = f"`{e.obj}` was not defined by any cell of this run"
    failed = [i for i in defining if i in errors]
    if failed:
        return reason + f"; cell {failed[-1]}, which defines it, raised {errors[failed[-1]]}"
    if errors:
        first = min(errors)
        return reason + f"; cell {first} raised {errors[first]}"
    return reason


def grade_notebook(
    path: str | Path,
    course: dict[str, list[Expected]],
    timeout: float = 600,
    kernel: str | None = None,
    preset: str | None = None,
    files: dict[str, bytes] | None = None,
) -> NotebookResult:
    """Grade one returned notebook against ``course`` (see the module docstring).

    Never raises for a learner's work; raises :class:`GraderError` if the kernel cannot start.
    ``files`` is the package to check with (default: lorakit's files as they are now).
    """
    from nbclient.util import run_sync

    path = Path(path)
    result = NotebookResult(notebook=str(path), chapter=match_chapter(path, course))
    start = time.perf_counter()
    try:
        nb = _cleared(nbformat.read(path, as_version=4))
    except Exception as exc:  # noqa: BLE001 -- a corrupt or foreign file is a result, not a crash
        result.error = f"could not read the notebook: {type(exc).__name__}: {_one_line(exc, 200)}"
        return result
    if result.chapter is None:
        result.error = (
            "cannot tell which chapter this is: name the file like the chapter "
            f"(e.g. {next(iter(course), '03_lora_from_scratch.ipynb')})"
        )
        return result
    expected = course[result.chapter]
    root = Path(tempfile.mkdtemp(prefix="lorakit-grade-"))
    token = secrets.token_hex(16)
    env = dict(os.environ, **{TOKEN_ENV: token}, **({"LORAKIT_PRESET": preset} if preset else {}))
    try:
        package = write_package_copy(
            files if files is not None else package_files(), root / "package"
        )
        work = _working_copy(path, root)
        client = GradingClient(
            nb,
            timeout=timeout,
            allow_errors=True,
            kernel_name=kernel or "python3",
            interrupt_on_timeout=True,
            resources={"metadata": {"path": str(work)}},
            error_on_timeout={
                "ename": "CellTimeoutError",
                "traceback": [],
                "evalue": f"the cell ran longer than {timeout:g} s and was interrupted",
            },
        )
        try:
            outcomes, stopped, timed_out = run_sync(run_and_recheck)(
                client, nb, expected, package, timeout, env
            )
        except RuntimeError as exc:
            if client.code_cells_executed == 0:  # the kernel never started: a set-up problem
                raise GraderError(
                    f"the kernel {kernel or 'python3'!r} did not start: {_one_line(exc, 300)}"
                ) from exc
            outcomes, stopped, timed_out = {}, f"the kernel failed: {_one_line(exc, 200)}", []
    finally:
        shutil.rmtree(root, ignore_errors=True)
    errors = {i: e for i, c in enumerate(nb.cells) if c.cell_type == "code" and (e := _error(c))}
    for i in timed_out:
        errors.setdefault(i, f"CellTimeoutError: ran longer than {timeout:g} s and was interrupted")
    result.cell_errors = [{"cell": i, "error": errors[i]} for i in sorted(errors)]
    result.error = stopped
    for e in expected:
        got = outcomes.get(e.name)
        if got is None:
            reason = f"not checked: {stopped or 'the grader got no result'}"
        elif got.get("error"):
            reason = f"the grader could not check it: {got['error']}"
            if "not from the grader's copy" in got["error"]:
                result.error = got["error"]
        elif not got.get("defined"):
            reason = _not_defined(e, nb, errors)
        else:
            reason = got.get("reason")
        passed = bool(got and got.get("passed") and got.get("defined") and not got.get("error"))
        result.exercises.append(
            ExerciseResult(e.name, passed, None if passed else _one_line(reason))
        )
    result.wall_s = round(time.perf_counter() - start, 2)
    return result


def grade(
    paths: list[str | Path],
    timeout: float = 600,
    kernel: str | None = None,
    preset: str | None = None,
    course: str | Path | None = None,
) -> list[NotebookResult]:
    """Grade several notebooks, each in a fresh kernel (see the module docstring).

    ``course``: the chapters folder or manifest the expected exercises come from (default: the
    ``chapters/`` of the course the installed lorakit belongs to).

    Raises
    ------
    FileNotFoundError
        If a notebook does not exist (checked before anything runs).
    lorakit.exercises.course.CourseError
        If the course cannot be read.
    GraderError
        If the kernel does not exist or does not start, or lorakit's files change while grading
        (``.results`` holds the notebooks graded until then).
    """
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"notebook(s) not found: {', '.join(missing)}; check the paths")
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout:g}")
    expected = load_course(course)
    check_kernel(kernel or "python3")
    files = package_files()
    hashes = digest(files)
    results: list[NotebookResult] = []
    for path in paths:
        changed = changed_files(hashes)
        if changed:
            culprit = (
                f" while grading {results[-1].notebook}" if results else " before grading started"
            )
            if results:
                results[
                    -1
                ].error = f"changed lorakit's installed files {changed[:5]}; its grade is void"
                for e in results[-1].exercises:
                    e.passed, e.reason = (
                        False,
                        "void: the notebook changed lorakit's installed files",
                    )
            raise GraderError(
                f"lorakit's files changed{culprit}: {changed[:5]}. Restore the package "
                "(reinstall it, or git checkout lorakit/) and grade the remaining "
                "notebooks again.",
                results,
            )
        try:
            results.append(grade_notebook(path, expected, timeout, kernel, preset, files))
        except GraderError as exc:
            exc.results = results
            raise
    changed = changed_files(hashes)
    if changed and results:
        results[-1].error = f"changed lorakit's installed files {changed[:5]}; its grade is void"
        for e in results[-1].exercises:
            e.passed, e.reason = False, "void: the notebook changed lorakit's installed files"
        raise GraderError(
            f"lorakit's files changed while grading {results[-1].notebook}: "
            f"{changed[:5]}. Restore the package and grade again.",
            results,
        )
    return results


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
        lines.append(
            f"{Path(res.notebook).name}: {res.passed}/{res.total} passed "
            f"({len(res.cell_errors)} cell(s) with errors){note}"
        )
    return "\n".join(lines)


def write_json(results: list[NotebookResult], path: str | Path) -> None:
    """Write the grades as JSON: ``{"notebooks": [...], "summary": {...}}``."""
    data = {
        "notebooks": [r.to_dict() for r in results],
        "summary": {
            "notebooks": len(results),
            "passed": sum(r.passed for r in results),
            "total": sum(r.total for r in results),
        },
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
