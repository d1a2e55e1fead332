"""Which exercises a returned notebook must hold: taken from the course, never from the notebook.

A chapter's check cells (``lorakit.exercises.check("ch03.lora_forward", lora_forward)``, or
``check(...)`` after ``from lorakit.exercises import check``, under any alias) name each exercise
and the object the learner defines for it: :func:`check_calls` finds them in a cell's code. The
grader reads them from the course's own chapters (the solution notebooks, or the student versions
made from them), or from the manifest ``lorakit_exercises.json`` that
``python -m lorakit.exercises student`` writes beside the student versions. A returned notebook
is matched to its chapter by file name, so deleting a check cell, adding one, or printing
``PASS ...`` changes nothing about what is expected.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nbformat

MANIFEST = "lorakit_exercises.json"
FORMAT = "lorakit-exercises"
FORMAT_VERSION = 1
_EXERCISE = re.compile(r"^ch\d\d\.[A-Za-z_]\w*$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CHECK_MODULES = ("lorakit.exercises", "lorakit.exercises.core")
# Fallback for a cell that does not parse: any call spelled `...check(` or `alias(`.
_CALL = re.compile(
    r"""(?<![\w.])([A-Za-z_][\w.]*)\(\s*["'](ch\d\d\.\w+)["']\s*,\s*([^)\n]*?)\s*[,)]"""
)


class CourseError(ValueError):
    """The course (chapters folder or manifest) the grader was given cannot be read."""


@dataclass(frozen=True)
class Expected:
    """One exercise a chapter expects: its name and the name of the learner's object."""

    name: str
    obj: str


def _parse(source: str) -> ast.Module | None:
    """The cell's code as a syntax tree (IPython ``%magic``/``!shell`` lines blanked), or None."""
    lines = ["" if ln.lstrip().startswith(("%", "!")) else ln for ln in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def check_aliases(sources: Iterable[str]) -> set[str]:
    """Names under which cells bind lorakit's ``check``: ``check`` and every ``as`` alias.

    Found in ``from lorakit.exercises import check as c`` and in ``c = lorakit.exercises.check``.
    """
    names = {"check"}
    for source in sources:
        tree = _parse(source)
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.ImportFrom) and node.module in _CHECK_MODULES:
                names |= {a.asname or a.name for a in node.names if a.name == "check"}
            elif (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "check"
            ):
                names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _callee(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def check_calls(source: str, aliases: Iterable[str] = ("check",)) -> list[tuple[str, str]]:
    """``(exercise name, object passed)`` for every check call in one cell's ``source``.

    A check call is a call of ``check`` (bare, or as an attribute: ``lorakit.exercises.check``,
    ``ex.check``) or of one of ``aliases``, whose first argument is a literal exercise name
    ``"chNN.name"``. The object is the second argument's source text ("" when there is none).
    A cell that does not parse is searched by a regular expression instead.
    """
    known = set(aliases) | {"check"}
    tree = _parse(source)
    if tree is None:
        return [
            (name, obj) for fn, name, obj in _CALL.findall(source) if fn.rsplit(".", 1)[-1] in known
        ]
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _callee(node.func) in known and node.args):
            continue
        first = node.args[0]
        if (
            isinstance(first, ast.Constant)
            and isinstance(first.value, str)
            and _EXERCISE.match(first.value)
        ):
            obj = ast.get_source_segment(source, node.args[1]) if len(node.args) > 1 else None
            if obj is None and len(node.args) > 1:
                obj = ast.unparse(node.args[1])
            found.append((first.value, node.lineno, node.col_offset, obj or ""))
    return [(name, obj) for name, *_, obj in sorted(found, key=lambda f: (f[1], f[2]))]


def chapter_exercises(nb: nbformat.NotebookNode, where: str = "notebook") -> list[Expected]:
    """The exercises of one chapter, in the order of its check cells (each name once).

    Every check call counts, however ``check`` is called (see :func:`check_calls`).

    Raises
    ------
    CourseError
        If a check cell passes something other than a plain name (the grader looks the learner's
        object up by that name).
    """
    found: dict[str, Expected] = {}
    aliases = check_aliases(c.source for c in nb.cells if c.cell_type == "code")
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for name, obj in check_calls(cell.source, aliases):
            if not _IDENT.match(obj):
                raise CourseError(
                    f"{where}, cell {index}: check({name!r}, {obj}) must pass a plain "
                    "name (the function or class the learner defines)"
                )
            found.setdefault(name, Expected(name, obj))
    return list(found.values())


def course_from_notebooks(paths: list[Path]) -> dict[str, list[Expected]]:
    """``{notebook file name: expected exercises}`` for the given chapter notebooks."""
    course = {}
    for path in paths:
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception as exc:  # noqa: BLE001 -- any unreadable chapter is the same error
            raise CourseError(
                f"cannot read the course notebook {path}: {type(exc).__name__}: {exc}"
            ) from exc
        course[path.name] = chapter_exercises(nb, path.name)
    return course


def write_manifest(folder: str | Path, course: dict[str, list[Expected]]) -> Path:
    """Write ``lorakit_exercises.json`` (the exercises each chapter expects) into ``folder``."""
    data = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "notebooks": {
            nb: [{"name": e.name, "object": e.obj} for e in exs]
            for nb, exs in sorted(course.items())
        },
    }
    path = Path(folder) / MANIFEST
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def read_manifest(path: str | Path) -> dict[str, list[Expected]]:
    """Read a manifest written by :func:`write_manifest`; raises :class:`CourseError`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise ValueError(f"no format={FORMAT!r}")
        course = {
            str(nb): [Expected(str(e["name"]), str(e["object"])) for e in exs]
            for nb, exs in data["notebooks"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CourseError(
            f"{path} is not a lorakit exercise manifest ({exc}); write it again with "
            "python -m lorakit.exercises student chapters/ --out student/"
        ) from exc
    for exs in course.values():
        for e in exs:
            if not _IDENT.match(e.obj):
                raise CourseError(
                    f"{path}: exercise {e.name} names object {e.obj!r}, not a plain name"
                )
    return course


def default_course() -> Path | None:
    """The ``chapters/`` folder beside the installed package (a clone of the course), if any."""
    folder = Path(__file__).resolve().parents[2] / "chapters"
    return folder if folder.is_dir() and any(folder.glob("*.ipynb")) else None


def load_course(source: str | Path | None = None) -> dict[str, list[Expected]]:
    """The course's expected exercises from a chapters folder, a manifest, or the default course.

    ``source`` may be a folder of chapter notebooks (a manifest in it wins), a manifest file, or
    ``None`` for the ``chapters/`` folder of the course that the installed lorakit belongs to.

    Raises
    ------
    CourseError
        If there is no course to read, or it cannot be read.
    """
    if source is None:
        source = default_course()
        if source is None:
            raise CourseError(
                "no course to take the expected exercises from: pass --course with the "
                "chapters folder or the lorakit_exercises.json that the student "
                "command wrote"
            )
    source = Path(source)
    if source.is_file():
        if source.suffix == ".ipynb":
            return course_from_notebooks([source])
        return read_manifest(source)
    if not source.is_dir():
        raise CourseError(
            f"--course {source} does not exist; pass the chapters folder or a manifest"
        )
    if (source / MANIFEST).is_file():
        return read_manifest(source / MANIFEST)
    notebooks = sorted(p for p in source.glob("*.ipynb") if p.is_file())
    if not notebooks:
        raise CourseError(f"--course {source} holds no notebooks and no {MANIFEST}")
    return course_from_notebooks(notebooks)


def match_chapter(notebook: str | Path, course: dict[str, list[Expected]]) -> str | None:
    """The course notebook a returned file belongs to, by name (``None`` when none fits).

    An exact file name wins; otherwise the longest chapter name (without ``.ipynb``) that the
    returned file's name contains, so ``alice_03_lora_from_scratch.ipynb`` is chapter 3.
    """
    name = Path(notebook).name
    if name in course:
        return name
    stem = Path(name).stem
    hits = [c for c in course if Path(c).stem and Path(c).stem in stem]
    return max(hits, key=len) if hits else None
