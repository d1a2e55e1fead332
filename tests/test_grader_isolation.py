"""The grader cannot be fooled, and one notebook cannot change another's grade.

Each test is a returned notebook written the way a careless or a dishonest learner would: stale
PASS outputs and a kernel that dies at once, deleted or invented check lines, a ``check`` that
always passes, lorakit's own reference passed as the answer, a notebook that edits the installed
package, writes into its folder and leaves processes running; plus an instructor's wrong kernel
name and a widget cell that used to hang the grader until the cell timeout.
"""

from __future__ import annotations

import inspect
import shutil
import sys
import time
from pathlib import Path

import nbformat
import pytest

import lorakit
from lorakit.exercises import ch03
from lorakit.exercises import kernel as grader_kernel
from lorakit.exercises.__main__ import main
from lorakit.exercises.core import NOT_IMPLEMENTED
from lorakit.exercises.grade import GraderError, grade

CH03 = "03_lora_from_scratch.ipynb"
# chapter 3's exercises in the order its notebook checks them
# (the grader expects them from the course)
CH03_EXERCISES = [
    "ch03.lora_forward",
    "ch03.lora_layer",
    "ch03.lora_grads",
    "ch03.merge_lora",
    "ch03.unmerge_lora",
    "ch03.eckart_young_floor",
]
STUB = "def {0}(*args, **kwargs):\n    raise NotImplementedError('Exercise: write this part')"


def _notebook(path: Path, *cells: str | tuple[str, list]) -> Path:
    """Write a notebook; a cell given as ``(source, outputs)`` keeps those saved outputs."""
    nb = nbformat.v4.new_notebook()
    for cell in cells:
        source, outputs = cell if isinstance(cell, tuple) else (cell, [])
        code = nbformat.v4.new_code_cell(source)
        code.outputs = outputs
        code.execution_count = 1 if outputs else None
        nb.cells.append(code)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _printed(text: str) -> list:
    return [nbformat.v4.new_output("stream", name="stdout", text=text)]


def _by_name(result) -> dict:
    return {e.name: e for e in result.exercises}


def test_stale_outputs_are_not_graded(tmp_path):
    """Item 1: no solutions, edited PASS outputs, os._exit(0) in the first cell: 0 passed."""
    returned = _notebook(
        tmp_path / CH03,
        "import os\nos._exit(0)",
        *[(f'lorakit.exercises.check("{n}", x)', _printed(f"PASS {n}\n")) for n in CH03_EXERCISES],
    )
    [result] = grade([returned], timeout=60)
    assert [e.name for e in result.exercises] == CH03_EXERCISES
    assert result.passed == 0
    assert result.error == "the kernel died in cell 0"
    assert all("not checked: the kernel died in cell 0" in e.reason for e in result.exercises)


def test_expected_exercises_come_from_the_course_not_the_notebook(tmp_path):
    """Item 2: deleted check cells and printed PASS lines (even for unknown exercises) do not
    count.
    """
    returned = _notebook(
        tmp_path / "alice_03_lora_from_scratch.ipynb",
        "import lorakit.exercises",
        STUB.format("lora_forward"),
        'print("PASS ch03.lora_forward")\nprint("PASS ch99.bonus")\nprint("PASS ch03.merge_lora")',
    )
    [result] = grade([returned], timeout=60)
    assert result.chapter == CH03
    assert [e.name for e in result.exercises] == CH03_EXERCISES  # none missing, no ch99.bonus
    assert result.passed == 0
    ex = _by_name(result)
    assert ex["ch03.lora_forward"].reason == NOT_IMPLEMENTED
    assert ex["ch03.merge_lora"].reason.startswith("`merge_lora` was not defined by any cell")


def test_the_grader_rechecks_with_its_own_checker(tmp_path):
    """Item 3: a patched ``check``/``explain`` and lorakit's own reference do not pass; real work
    does.
    """
    returned = _notebook(
        tmp_path / CH03,
        "import lorakit.exercises, lorakit.exercises.core as core\n"
        "core.explain = lambda *a, **k: None\n"
        "lorakit.exercises.check = lambda name, obj: print(f'PASS {name}')",
        STUB.format("lora_forward"),
        'lorakit.exercises.check("ch03.lora_forward", lora_forward)',
        # the reference is not the learner's answer
        "from lorakit.exercises.ch03 import merge_lora",
        "import torch, math\nfrom torch import nn\n" + inspect.getsource(ch03.LoRAFromScratch),
        "import torch\n" + inspect.getsource(ch03.unmerge_lora),
    )
    [result] = grade([returned], timeout=60)
    ex = _by_name(result)
    assert ex["ch03.lora_forward"].reason == NOT_IMPLEMENTED
    assert not ex["ch03.merge_lora"].passed
    assert ex["ch03.lora_layer"].passed and ex["ch03.unmerge_lora"].passed
    assert result.passed == 2 and result.cell_errors == []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_each_notebook_runs_in_a_copy_and_leaves_nothing_running(tmp_path):
    """Item 4: writes and deletions stay in a temporary copy; leftover processes are killed."""
    folder = tmp_path / "returned"
    folder.mkdir()
    (folder / "data.csv").write_text("a,b\n")
    pids = tmp_path / "pids.txt"
    returned = _notebook(
        folder / CH03,
        "import os, subprocess\nopen('written.txt', 'w').write('x')\nos.remove('data.csv')",
        "p = subprocess.Popen(['sleep', '400'])\n"
        "q = subprocess.Popen(['sleep', '401'], start_new_session=True)\n"
        f"open({str(pids)!r}, 'w').write(f'{{p.pid}} {{q.pid}}')",
    )
    [result] = grade([returned], timeout=60)
    assert result.cell_errors == [], result.cell_errors
    assert (folder / "data.csv").exists() and not (folder / "written.txt").exists()
    started = [int(p) for p in pids.read_text().split()]
    deadline = time.monotonic() + 5
    while any(map(_alive, started)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, started))


def test_a_notebook_that_edits_the_package_stops_the_grading(tmp_path, monkeypatch, capsys):
    """Item 4: a notebook appends to lorakit's core.py; the next notebook is not graded with it."""
    copy = tmp_path / "site"
    shutil.copytree(
        Path(lorakit.__file__).parent,
        copy / "lorakit",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    monkeypatch.setattr(grader_kernel, "PACKAGE_DIR", copy / "lorakit")
    monkeypatch.setenv("PYTHONPATH", str(copy))  # the kernels import this copy
    tamper = _notebook(
        tmp_path / "a" / CH03,
        "import lorakit.exercises.core as core\n"
        "open(core.__file__, 'a').write('\\ndef explain(*a, **k):\\n    return None\\n')",
    )
    untouched = _notebook(tmp_path / "b" / CH03, STUB.format("lora_forward"))
    assert main(["grade", str(tamper), str(untouched), "--timeout", "60"]) == 2
    out, err = capsys.readouterr()
    assert "lorakit's files changed while grading" in err and "exercises/core.py" in err
    assert (
        f"03_lora_from_scratch.ipynb: 0/{len(CH03_EXERCISES)} passed" in out
        and "its grade is void" in out
    )
    assert out.count("passed (") == 1  # the second notebook was not graded


def test_a_shadowing_lorakit_in_the_folder_does_not_check(tmp_path):
    """Item 4: a fake lorakit next to the notebook does not replace the grader's checker."""
    fake = tmp_path / "returned" / "lorakit" / "exercises"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "core.py").write_text("def explain(*args, **kwargs):\n    return None\n")
    returned = _notebook(tmp_path / "returned" / CH03, STUB.format("lora_forward"))
    [result] = grade([returned], timeout=60)
    assert _by_name(result)["ch03.lora_forward"].reason == NOT_IMPLEMENTED
    assert result.passed == 0


def test_an_unknown_kernel_is_an_error_not_zeros(tmp_path, capsys):
    """Item 5: an instructor's configuration error exits non-zero before anything runs."""
    returned = _notebook(tmp_path / CH03, "x = 1")
    assert main(["grade", str(returned), "--kernel", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "no Jupyter kernel named 'nosuch'" in err and "python3" in err
    with pytest.raises(GraderError, match="nosuch"):
        grade([returned], kernel="nosuch")


def test_widget_cells_run_in_the_time_their_code_takes(tmp_path):
    """The hang: an Output widget's state sent back on the shell channel hid the execute reply.

    An 8 MB output in an ``interact`` cell loses the race every time with nbclient's own client
    (each run then waits for the whole cell timeout, 30 s here); the grading client does not.
    """
    from lorakit.exercises.kernel import GradingClient

    path = _notebook(
        tmp_path / "widget.ipynb",
        "import ipywidgets as widgets\nfrom IPython.display import display",
        "def show(k):\n    display({'text/plain': 'x' * 8_000_000}, raw=True)",
        "widgets.interact(show, k=widgets.IntSlider(value=2, min=1, max=5));",
        "print('done')",
    )
    for _ in range(3):
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        GradingClient(nb, timeout=30, allow_errors=True, kernel_name="python3").execute()
        assert time.perf_counter() - start < 15
        assert nb.cells[-1].outputs[0]["text"] == "done\n"
