"""Which exercises a returned notebook must hold: taken from the course, never from the notebook.

A chapter's check cells (``lorakit.exercises.check("ch03.lora_forward", lora_forward)``) name each
exercise and the object the learner defines for it. The grader reads them from the course's own
chapters (the solution notebooks, or the student versions made from them), or from the manifest
``lorakit_exercises.json`` that ``python -m lorakit.exercises student`` writes beside the student
versions. A returned notebook is matched to its chapter by file name, so deleting a check cell,
adding one, or printing ``PASS ...`` changes nothing about what is expected.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

MANIFEST = "lorakit_exercises.json"
FORMAT = "lorakit-exercises"
FORMAT_VERSION = 1
_CHECK = re.compile(r"""exercises\.check\(\s*["'](ch\d\d\.\w+)["']\s*,\s*([^)\n]*?)\s*\)""")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CourseError(ValueError):
    """The course (chapters folder or manifest) the grader was given cannot be read."""


@dataclass(frozen=True)
class Expected:
    """One exercise a chapter expects: its name and the name of the learner's object."""

    name: str
    obj: str


def chapter_exercises(nb: nbformat.NotebookNode, where: str = "notebook") -> list[Expected]:
    """The exercises of one chapter, in the order of its check cells (each name once).

    Raises
    ------
    CourseError
        If a check cell passes something other than a plain name (the grader looks the learner's
        object up by that name).
    """
    found: dict[str, Expected] = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for name, obj in _CHECK.findall(cell.source):
            if not _IDENT.match(obj):
                raise CourseError(f"{where}, cell {index}: check({name!r}, {obj}) must pass a plain "
                                  "name (the function or class the learner defines)")
            found.setdefault(name, Expected(name, obj))
    return list(found.values())


def course_from_notebooks(paths: list[Path]) -> dict[str, list[Expected]]:
    """``{notebook file name: expected exercises}`` for the given chapter notebooks."""
    course = {}
    for path in paths:
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception as exc:  # noqa: BLE001 -- any unreadable chapter is the same error
            raise CourseError(f"cannot read the course notebook {path}: {type(exc).__name__}: {exc}") from exc
        course[path.name] = chapter_exercises(nb, path.name)
    return course


def write_manifest(folder: str | Path, course: dict[str, list[Expected]]) -> Path:
    """Write ``lorakit_exercises.json`` (the exercises each chapter expects) into ``folder``."""
    data = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "notebooks": {nb: [{"name": e.name, "object": e.obj} for e in exs]
                          for nb, exs in sorted(course.items())}}
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
        course = {str(nb): [Expected(str(e["name"]), str(e["object"])) for e in exs]
                  for nb, exs in data["notebooks"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CourseError(f"{path} is not a lorakit exercise manifest ({exc}); write it again with "
                          "python -m lorakit.exercises student chapters/ --out student/") from exc
    for exs in course.values():
        for e in exs:
            if not _IDENT.match(e.obj):
                raise CourseError(f"{path}: exercise {e.name} names object {e.obj!r}, not a plain name")
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
            raise CourseError("no course to take the expected exercises from: pass --course with the "
                              "chapters folder or the lorakit_exercises.json that the student "
                              "command wrote")
    source = Path(source)
    if source.is_file():
        if source.suffix == ".ipynb":
            return course_from_notebooks([source])
        return read_manifest(source)
    if not source.is_dir():
        raise CourseError(f"--course {source} does not exist; pass the chapters folder or a manifest")
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
