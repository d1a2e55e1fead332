"""Student versions and grading, on the real chapters and on small synthetic notebooks.

Proves: student versions hold no solution text and a stub per exercise; a student chapter runs to
its end under nbval; grading reports every exercise (all PASS for the solutions, all FAIL for the
student versions, in minutes for every chapter: widget cells do not wait for the timeout) and
turns a learner's crash, or a cell that never ends, into feedback instead of a crash of the grader.
(What the grader refuses to be fooled by is in test_grader_isolation.py.)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lorakit.exercises.__main__ import main
from lorakit.exercises.core import NOT_IMPLEMENTED, names
from lorakit.exercises.course import check_calls, load_course
from lorakit.exercises.grade import grade
from lorakit.exercises.student import (
    SolutionMarkerError,
    check_names,
    make_student_notebook,
    strip_solutions,
    write_student_versions,
)

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"
CH03 = CHAPTERS / "03_lora_from_scratch.ipynb"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


def _solution_lines(nb) -> set[str]:
    """Distinctive lines inside solution regions (long enough not to occur by chance elsewhere)."""
    inside, outside = set(), set()
    for cell in nb.cells:
        region = False
        for line in cell.source.splitlines():
            if line.strip() == BEGIN:
                region = True
            elif line.strip() == END:
                region = False
            else:
                (inside if region else outside).add(line.strip())
    return {ln for ln in inside - outside if len(ln) >= 12}


def _chapter_exercises(nb_path: Path) -> list[str]:
    nb = nbformat.read(nb_path, as_version=4)
    return [n for c in nb.cells if c.cell_type == "code" for n in check_names(c.source)]


# How many exercises each chapter holds, as the student and grade tools find them. A chapter that
# adds or drops an exercise updates this table; a check cell the tools miss fails the test.
EXERCISES_PER_CHAPTER = {
    "00_start_here.ipynb": 0,
    "01_rank.ipynb": 3,
    "02_svd.ipynb": 3,
    "03_lora_from_scratch.ipynb": 6,
    "04_lora_in_gpt2.ipynb": 3,
    "05_base_model.ipynb": 4,
    "06_finetune_gpt2.ipynb": 4,
    "10_many_adapters.ipynb": 2,
}


def test_the_tools_find_every_exercise_of_every_chapter(student_dir):
    """Per notebook: the grader's course, the student manifest and the stubs all count the
    exercises registered for that chapter, however the check cell calls ``check``."""
    course = load_course(CHAPTERS)  # what the grader expects, read from the solution notebooks
    manifest = json.loads((student_dir / "lorakit_exercises.json").read_text())["notebooks"]
    registered = names()
    for nb_path in sorted(CHAPTERS.glob("*.ipynb")):
        found = [e.name for e in course[nb_path.name]]
        prefix = f"ch{nb_path.name[:2]}."
        assert sorted(found) == sorted(n for n in registered if n.startswith(prefix)), nb_path.name
        assert [e["name"] for e in manifest[nb_path.name]] == found, nb_path.name
        assert sorted(_chapter_exercises(nb_path)) == sorted(found), nb_path.name
        if nb_path.name in EXERCISES_PER_CHAPTER:
            assert len(found) == EXERCISES_PER_CHAPTER[nb_path.name], (nb_path.name, found)
        text = "\n".join(
            c.source for c in nbformat.read(student_dir / nb_path.name, as_version=4).cells
        )
        for name in found:
            assert f'NotImplementedError("Exercise {name}:' in text, (nb_path.name, name)


def test_check_calls_are_found_however_check_is_called():
    src = (
        "%matplotlib inline\n"
        'check("ch04.a", fa)\n'
        "ok = lorakit.exercises.check(\"ch04.b\", fb);  exercises.check('ch04.c', fc)\n"
        'chk("ch04.d", fd)\n'
        'print("ch04.e", fe)\n'
        'lorakit.exercises.get("ch04.f")\n'
    )
    assert check_calls(src) == [("ch04.a", "fa"), ("ch04.b", "fb"), ("ch04.c", "fc")]
    assert [n for n, _ in check_calls(src, {"chk"})] == ["ch04.a", "ch04.b", "ch04.c", "ch04.d"]
    broken = 'check("ch04.a", fa)\ndef f(:\n    pass\nlorakit.exercises.check("ch04.b", fb)'
    assert check_calls(broken) == [("ch04.a", "fa"), ("ch04.b", "fb")]  # by regex: no parse


def test_a_bare_check_is_graded(tmp_path):
    """A course whose check cells call ``check(...)`` (imported bare, or under an alias) expects
    those exercises: the student version stubs them and grading reports 0/2, not 0/0."""
    course = tmp_path / "course"
    course.mkdir()
    _notebook(
        course / "09_x.ipynb",
        "from lorakit.exercises import check\nfrom lorakit.exercises import check as chk",
        "from lorakit.exercises.ch09 import subspace_similarity as _ref\n"
        "def subspace_similarity(*args, **kwargs):\n"
        "    ### BEGIN SOLUTION\n    return _ref(*args, **kwargs)\n    ### END SOLUTION",
        'check("ch09.subspace_similarity", subspace_similarity)',
        "from lorakit.exercises.ch09 import amplification_factor as _amp\n"
        "def amplification_factor(*args, **kwargs):\n"
        "    ### BEGIN SOLUTION\n    return _amp(*args, **kwargs)\n    ### END SOLUTION",
        'chk("ch09.amplification_factor", amplification_factor)',
    )
    [student] = write_student_versions([course], tmp_path / "student")
    stubbed = "\n".join(c.source for c in nbformat.read(student, as_version=4).cells)
    assert 'NotImplementedError("Exercise ch09.subspace_similarity:' in stubbed
    assert 'NotImplementedError("Exercise ch09.amplification_factor:' in stubbed
    returned, solution = grade([student, course / "09_x.ipynb"], timeout=120, course=course)
    assert (returned.passed, returned.total) == (0, 2), returned
    assert (solution.passed, solution.total) == (2, 2), solution


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student")
    assert main(["student", str(CHAPTERS), "--out", str(out)]) == 0
    return out


def test_student_versions_hold_stubs_and_no_solutions(student_dir):
    sources = sorted(CHAPTERS.glob("*.ipynb"))
    assert sorted(p.name for p in student_dir.glob("*.ipynb")) == [p.name for p in sources]
    n_exercises = 0
    for src in sources:
        solution = nbformat.read(src, as_version=4)
        student = nbformat.read(student_dir / src.name, as_version=4)
        text = "\n".join(c.source for c in student.cells)
        assert not {BEGIN, END} & {line.strip() for line in text.splitlines()}
        assert "NBVAL_CHECK_OUTPUT" not in text
        code = "\n".join(c.source for c in student.cells if c.cell_type == "code")
        for line in _solution_lines(solution):
            assert line not in code, (
                f"{src.name}: solution line left in the student version: {line!r}"
            )
        for name in _chapter_exercises(src):
            n_exercises += 1
            assert f'NotImplementedError("Exercise {name}:' in text, (
                f"{src.name}: no stub for {name}"
            )
        for cell in student.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None
    assert n_exercises >= 4


def test_student_version_keeps_signature_docstring_and_indentation(student_dir):
    student = nbformat.read(student_dir / CH03.name, as_version=4)
    cell = next(c.source for c in student.cells if "class LoRAFromScratch" in c.source)
    assert "def __init__(self, base: nn.Linear, r: int, alpha: float) -> None:" in cell
    assert "super().__init__()" in cell and "A frozen ``nn.Linear``" in cell
    stubs = re.findall(r"^( *)raise NotImplementedError\(\"Exercise ch03.lora_layer", cell, re.M)
    assert stubs == [" " * 8, " " * 8]  # one per method, at the body's indentation
    assert "# sync:" not in cell


def test_student_chapter_runs_to_the_end_under_nbval(student_dir):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--nbval-lax",
            "--nbval-current-env",
            "-o",
            "addopts=",
            "--rootdir",
            str(student_dir),
            str(student_dir / CH03.name),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=student_dir,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def test_grading_solutions_pass_and_student_versions_fail(student_dir, tmp_path):
    student = student_dir / CH03.name
    out = tmp_path / "grades.json"
    assert main(["grade", str(CH03), str(student), "--json", str(out), "--timeout", "300"]) == 0
    data = json.loads(out.read_text())
    solution, returned = data["notebooks"]
    assert solution["notebook"] == str(CH03) and returned["notebook"] == str(student)
    expected = _chapter_exercises(CH03)
    assert sorted(expected) == [n for n in names() if n.startswith("ch03.")]
    for result in (solution, returned):
        assert result["error"] is None and result["cell_errors"] == [], result
        assert result["chapter"] == CH03.name
        assert [e["name"] for e in result["exercises"]] == expected
    n = EXERCISES_PER_CHAPTER[CH03.name]
    assert all(e["passed"] for e in solution["exercises"]) and solution["passed"] == n
    assert returned["passed"] == 0 and returned["total"] == n
    assert all(e["reason"] == NOT_IMPLEMENTED for e in returned["exercises"])
    assert data["summary"] == {"notebooks": 2, "passed": n, "total": 2 * n}


def test_every_student_chapter_runs_to_the_end_with_its_checks_failing(student_dir, tmp_path):
    """Each chapter with exercises, as a student gets it: no cell errors, every check FAILs."""
    chapters = [p for p in sorted(CHAPTERS.glob("*.ipynb")) if _chapter_exercises(p)]
    assert len(chapters) >= 5
    out = tmp_path / "grades.json"
    students = [str(student_dir / p.name) for p in chapters]
    assert main(["grade", *students, "--json", str(out), "--timeout", "600"]) == 0
    data = json.loads(out.read_text())
    for chapter, result in zip(chapters, data["notebooks"]):
        assert result["error"] is None and result["cell_errors"] == [], (chapter.name, result)
        assert [e["name"] for e in result["exercises"]] == _chapter_exercises(chapter)
        assert result["passed"] == 0, (chapter.name, result["exercises"])
        assert all(e["reason"] == NOT_IMPLEMENTED for e in result["exercises"]), chapter.name


def _notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def test_grader_turns_learner_errors_into_feedback(tmp_path, capsys):
    returned = _notebook(
        tmp_path / CH03.name,
        "import lorakit.exercises",
        "def lora_forward(x, W0, A, B, alpha):\n    return x @ W0",  # wrong shapes
        'lorakit.exercises.check("ch03.lora_forward", lora_forward);',
        "def merge_lora(W0, A, B, alpha)\n    return W0",  # syntax error: never defined
        'lorakit.exercises.check("ch03.merge_lora", merge_lora);',
        "1 / 0",
        "import time\ntime.sleep(30)",  # interrupted at the timeout; the next cells still run
        "def unmerge_lora(W, A, B, alpha):\n    return W - (alpha / A.shape[0]) * (B @ A)",
        'lorakit.exercises.check("ch03.unmerge_lora", unmerge_lora);',
    )
    corrupt = tmp_path / "corrupt.ipynb"
    corrupt.write_text("{ not json")
    unknown = _notebook(tmp_path / "homework.ipynb", 'print("PASS ch03.lora_layer")')
    out = tmp_path / "g.json"
    assert (
        main(
            [
                "grade",
                str(returned),
                str(corrupt),
                str(unknown),
                "--json",
                str(out),
                "--timeout",
                "5",
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert (
        f"{CH03.name}: 1/{EXERCISES_PER_CHAPTER[CH03.name]} passed (4 cell(s) with errors)" in table
    )
    results = {Path(r["notebook"]).name: r for r in json.loads(out.read_text())["notebooks"]}
    got = results[CH03.name]
    assert got["chapter"] == CH03.name and got["error"] is None
    ex = {e["name"]: e for e in got["exercises"]}
    assert ex["ch03.unmerge_lora"]["passed"] is True
    assert (
        "your code raised RuntimeError (in lora_forward, line 2)"
        in ex["ch03.lora_forward"]["reason"]
    )
    assert ex["ch03.merge_lora"]["reason"].startswith(
        "`merge_lora` was not defined by any cell of this run; cell 3, which defines it, raised "
        "SyntaxError"
    )
    assert ex["ch03.lora_layer"]["reason"].startswith("`LoRAFromScratch` was not defined")
    errors = {e["cell"]: e["error"] for e in got["cell_errors"]}
    assert sorted(errors) == [3, 4, 5, 6] and errors[6].startswith("KeyboardInterrupt")
    assert results["corrupt.ipynb"]["error"].startswith("could not read the notebook")
    assert results["corrupt.ipynb"]["total"] == 0
    assert results["homework.ipynb"]["error"].startswith("cannot tell which chapter this is")
    assert results["homework.ipynb"]["total"] == 0


def test_a_cell_that_ignores_the_interrupt_stops_the_notebook(tmp_path):
    returned = _notebook(
        tmp_path / CH03.name,
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
        "def lora_forward(x, W0, A, B, alpha):\n    return x",
    )
    [result] = grade([returned], timeout=3)
    assert result.error.startswith(
        "cell 0 ran past the 3 s limit and did not stop when interrupted"
    )
    assert result.passed == 0 and all(
        e.reason.startswith("not checked: cell 0") for e in result.exercises
    )


def test_grading_with_the_manifest_of_the_student_versions(student_dir, tmp_path):
    manifest = student_dir / "lorakit_exercises.json"
    data = json.loads(manifest.read_text())
    assert data["notebooks"][CH03.name] == [
        {"name": n, "object": o}
        for n, o in [
            ("ch03.lora_forward", "lora_forward"),
            ("ch03.lora_layer", "LoRAFromScratch"),
            ("ch03.lora_grads", "lora_grads"),
            ("ch03.merge_lora", "merge_lora"),
            ("ch03.unmerge_lora", "unmerge_lora"),
            ("ch03.eckart_young_floor", "eckart_young_floor"),
        ]
    ]
    returned = _notebook(tmp_path / f"bob-{CH03.name}", "lora_forward = 1")
    [result] = grade([returned], timeout=60, course=manifest)
    assert result.chapter == CH03.name and result.total == 6 and result.passed == 0
    assert "your code raised TypeError" in result.exercises[0].reason


def test_grade_and_student_refuse_bad_paths(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "missing.ipynb")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["grade", str(CH03), "--course", str(tmp_path / "nowhere")]) == 2
    assert "--course" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="check the paths"):
        grade([tmp_path / "missing.ipynb"])
    assert main(["student", str(tmp_path / "nope"), "--out", str(tmp_path / "s")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["student", str(tmp_path), "--out", str(tmp_path / "s")]) == 2
    assert "no notebooks" in capsys.readouterr().err
    _notebook(tmp_path / "a.ipynb", "x = 1")
    assert main(["student", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "overwrite the solutions" in capsys.readouterr().err


def test_strip_solutions_keeps_indentation_and_names_the_exercise():
    src = (
        'def f(x):\n    """Doc."""\n    ### BEGIN SOLUTION\n'
        "    return x\n    ### END SOLUTION\ny = 1"
    )
    out = strip_solutions(src, "ch09.f")
    assert out.splitlines() == [
        "def f(x):",
        '    """Doc."""',
        "    # Your code here; then run the check cell below.",
        '    raise NotImplementedError("Exercise ch09.f: replace this line with your code")',
        "y = 1",
    ]
    assert (
        strip_solutions("### BEGIN SOLUTION\nsecret\n### END SOLUTION", markdown=True)
        == "*Your answer here.*"
    )


@pytest.mark.parametrize(
    "src,match",
    [
        ("### BEGIN SOLUTION\nx = 1", "never closed"),
        ("x = 1\n### END SOLUTION", "without a"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
    ],
)
def test_unbalanced_markers_are_reported(src, match):
    with pytest.raises(SolutionMarkerError, match=match):
        strip_solutions(src)


def test_bad_markers_leave_the_output_untouched_and_name_the_cell(tmp_path):
    src = tmp_path / "chapters"
    src.mkdir()
    _notebook(src / "a.ipynb", "x = 1")
    _notebook(src / "b.ipynb", "y = 2", "def g():\n    ### BEGIN SOLUTION\n    return 1")
    with pytest.raises(SolutionMarkerError, match=r"b.ipynb, cell 1: .*never closed"):
        write_student_versions(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_other_files_are_copied_and_the_source_is_untouched(tmp_path):
    src = tmp_path / "chapters"
    (src / "images").mkdir(parents=True)
    (src / "images" / "fig.txt").write_text("figure")
    (src / "data.csv").write_text("a,b\n")
    nb_path = _notebook(
        src / "c.ipynb",
        "def h():\n    ### BEGIN SOLUTION\n    return 2\n    ### END SOLUTION",
        'lorakit.exercises.check("ch09.h", h)',
    )
    before = nb_path.read_text()
    written = write_student_versions([src], tmp_path / "out")
    assert written == [tmp_path / "out" / "c.ipynb"]
    assert (tmp_path / "out" / "images" / "fig.txt").read_text() == "figure"
    assert (tmp_path / "out" / "data.csv").exists()
    assert nb_path.read_text() == before
    student = nbformat.read(written[0], as_version=4)
    assert student.metadata["lorakit"] == {"student_version": True}
    assert 'raise NotImplementedError("Exercise ch09.h:' in student.cells[1].source
    nbformat.validate(student)


def test_make_student_notebook_does_not_modify_its_input():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("### BEGIN SOLUTION\nz = 3\n### END SOLUTION")]
    make_student_notebook(nb)
    assert "z = 3" in nb.cells[0].source
