"""Student versions of the chapters: solutions out, stubs in, outputs cleared.

In a solution notebook, the learner's part of an exercise cell sits between two marker lines::

    def lora_forward(x, W0, A, B, alpha):
        \"\"\"...\"\"\"
        ### BEGIN SOLUTION
        r = A.shape[0]
        return x @ W0.T + (alpha / r) * (x @ A.T @ B.T)
        ### END SOLUTION

The student version keeps everything outside the markers (signature, docstring) and replaces the
region by a stub at the marker's indentation::

        # Your code here; then run the check cell below.
        raise NotImplementedError("Exercise ch03.lora_forward: replace this line with your code")

Outputs and execution counts are cleared and ``# NBVAL_CHECK_OUTPUT`` markers removed (the check
cells of a student version print FAIL until the learner's work is done, and no stored output is
left to compare), so a student version runs to its end under nbval. Later cells of a chapter use
``lorakit``'s reference, never the learner's object, so nothing downstream breaks.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from pathlib import Path

import nbformat

from lorakit.exercises.course import chapter_exercises, check_aliases, check_calls, write_manifest

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
_BEGIN_RE = re.compile(r"^(\s*)### BEGIN SOLUTION\s*$")
_END_RE = re.compile(r"^\s*### END SOLUTION\s*$")
_NBVAL_CHECK = re.compile(r"^\s*# NBVAL_CHECK_OUTPUT\s*$")
_SYNC = re.compile(r"^\s*# sync:")
_SKIP = {".ipynb_checkpoints", "__pycache__"}
NOTICE = (
    "**Student version.** The solutions of this chapter's exercises were removed. In each exercise "
    "cell, replace the `raise NotImplementedError(...)` by your code, run the cell, then run the "
    "check cell below it: it prints `PASS ...` or `FAIL ...: what was wrong`. The rest of the "
    "chapter uses `lorakit`'s reference implementation, so it runs whatever state your answers "
    "are in."
)


class SolutionMarkerError(ValueError):
    """The ``### BEGIN/END SOLUTION`` markers of a cell are unbalanced or nested."""


def check_names(source: str, aliases: Iterable[str] = ("check",)) -> list[str]:
    """Exercise names of the check calls in ``source``, however ``check`` is called.

    ``lorakit.exercises.check("chNN.name", ...)``, a bare ``check("chNN.name", ...)``, and calls
    of ``aliases`` (see :func:`lorakit.exercises.course.check_calls`).
    """
    return [name for name, _ in check_calls(source, aliases)]


def strip_solutions(source: str, exercise: str | None = None, markdown: bool = False) -> str:
    """Replace every solution region of one cell's ``source`` by a stub.

    Parameters
    ----------
    source : str
        The cell's text.
    exercise : str, optional
        The exercise name to put into the stub's message.
    markdown : bool
        For a markdown cell, the region becomes "*Your answer here.*" instead of code.

    Raises
    ------
    SolutionMarkerError
        If a BEGIN has no END, an END has no BEGIN, or regions are nested.
    """
    label = f"Exercise {exercise}" if exercise else "Exercise"
    out: list[str] = []
    indent: str | None = None
    for lineno, line in enumerate(source.splitlines(), start=1):
        begin, end = _BEGIN_RE.match(line), _END_RE.match(line)
        if begin:
            if indent is not None:
                raise SolutionMarkerError(
                    f"line {lineno}: '{BEGIN}' inside another solution region; "
                    f"close the first one with '{END}'"
                )
            indent = begin.group(1)
        elif end:
            if indent is None:
                raise SolutionMarkerError(f"line {lineno}: '{END}' without a '{BEGIN}' before it")
            if markdown:
                out.append(f"{indent}*Your answer here.*")
            else:
                out.append(f"{indent}# Your code here; then run the check cell below.")
                out.append(
                    f'{indent}raise NotImplementedError("{label}: replace this line with '
                    'your code")'
                )
            indent = None
        elif indent is None:
            out.append(line)
    if indent is not None:
        raise SolutionMarkerError(
            f"'{BEGIN}' is never closed; add a line '{END}' after the solution"
        )
    return "\n".join(out)


def make_student_notebook(
    nb: nbformat.NotebookNode, name: str = "notebook"
) -> nbformat.NotebookNode:
    """A student version of ``nb`` (a new object; ``nb`` is left untouched).

    Raises
    ------
    SolutionMarkerError
        Naming the notebook and cell whose markers are wrong.
    """
    student = nbformat.from_dict(nb)  # deep copy
    cells = student.cells
    aliases = check_aliases(c.source for c in cells if c.cell_type == "code")
    n_regions = 0
    for i, cell in enumerate(cells):
        src = cell.source
        if BEGIN not in src and END not in src:
            if cell.cell_type == "code":
                cell.source = "\n".join(ln for ln in src.splitlines() if not _NBVAL_CHECK.match(ln))
            continue
        later = [c.source for c in cells[i : i + 3] if c.cell_type == "code"]
        found = [n for s in later for n in check_names(s, aliases)]
        try:
            new = strip_solutions(
                src, found[0] if found else None, markdown=cell.cell_type != "code"
            )
        except SolutionMarkerError as exc:
            raise SolutionMarkerError(f"{name}, cell {i}: {exc}") from None
        if cell.cell_type == "code":
            new = "\n".join(
                ln for ln in new.splitlines() if not _NBVAL_CHECK.match(ln) and not _SYNC.match(ln)
            )
        cell.source = new
        n_regions += sum(bool(_BEGIN_RE.match(ln)) for ln in src.splitlines())
    for cell in cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
    if n_regions:
        at = 1 if cells and cells[0].cell_type == "markdown" else 0
        cells.insert(at, nbformat.v4.new_markdown_cell(NOTICE))
    student.metadata["lorakit"] = {"student_version": True}
    return student


def _notebooks(sources: list[Path]) -> list[Path]:
    found: list[Path] = []
    for src in sources:
        if not src.exists():
            raise FileNotFoundError(
                f"{src} does not exist; pass the chapters folder or notebook files"
            )
        if src.is_dir():
            found += sorted(p for p in src.glob("*.ipynb") if p.is_file())
        elif src.suffix == ".ipynb":
            found.append(src)
        else:
            raise ValueError(f"{src} is not a notebook (.ipynb) or a folder of notebooks")
    if not found:
        raise FileNotFoundError(f"no notebooks (*.ipynb) found in {', '.join(map(str, sources))}")
    return found


def write_student_versions(sources: list[str | Path] | str | Path, out: str | Path) -> list[Path]:
    """Write the student version of every notebook in ``sources`` into ``out``.

    ``sources`` are notebook files or folders of them (e.g. ``chapters/``). Other files in a source
    folder (images, data the chapters read) are copied as they are. Every notebook is converted in
    memory before anything is written, so an error leaves ``out`` untouched.

    Beside them it writes ``lorakit_exercises.json``, the exercises each chapter expects (what
    the grader's ``--course`` takes when the chapters themselves are not at hand).

    Returns
    -------
    list of Path
        The student notebooks written.

    Raises
    ------
    FileNotFoundError
        A source does not exist or holds no notebook.
    ValueError
        ``out`` is a source folder (that would overwrite the solutions), or markers are wrong
        (:class:`SolutionMarkerError`).
    """
    srcs = [Path(s) for s in ([sources] if isinstance(sources, (str, Path)) else sources)]
    out = Path(out)
    notebooks = _notebooks(srcs)
    for src in srcs:
        if src.is_dir() and out.resolve() == src.resolve():
            raise ValueError(
                f"--out {out} is the source folder; that would overwrite the solutions. "
                "Choose another folder, e.g. student/"
            )
    converted, course = [], {}
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        course[path.name] = chapter_exercises(nb, path.name)
        converted.append((path, make_student_notebook(nb, path.name)))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path, nb in converted:
        target = out / path.name
        if target.resolve() == path.resolve():
            raise ValueError(
                f"{target} is the solution notebook itself; choose another --out folder"
            )
        nbformat.write(nb, target)
        written.append(target)
    write_manifest(out, course)
    for src in srcs:
        if src.is_dir():
            for item in src.iterdir():
                if item.suffix == ".ipynb" or item.name in _SKIP or item.name.startswith("."):
                    continue
                if item.is_dir():
                    shutil.copytree(
                        item,
                        out / item.name,
                        dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(*_SKIP),
                    )
                else:
                    shutil.copy2(item, out / item.name)
    return written
