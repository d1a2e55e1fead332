"""The outputs stored in chapters 0-4 are what a reader sees: they must come from one run of the
current notebooks, in the preset the chapter says, and the facts they print must still hold.

These tests read the stored notebooks; they run nothing heavy. nbval (the notebook tests) re-runs
the chapters, but in the ``ci`` preset and comparing only ``# NBVAL_CHECK_OUTPUT`` cells, so it
cannot see, for instance, a stored list of recorded runs that is out of date in another cell, or
a chapter edited after its outputs were stored.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from lorakit import runs

CHAPTERS = Path(__file__).resolve().parent.parent / "chapters"
STORED_IN_CPU = [
    "00_start_here.ipynb",
    "01_rank.ipynb",
    "02_svd.ipynb",
    "03_lora_from_scratch.ipynb",
    "04_lora_in_gpt2.ipynb",
]


def _text(cell) -> str:
    """The stored text outputs of a code cell (streams and plain-text results), joined."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def _cell(nb, needle: str):
    hits = [c for c in nb.cells if c.cell_type == "code" and needle in c.source]
    assert len(hits) == 1, f"expected one code cell containing {needle!r}, found {len(hits)}"
    return hits[0]


@pytest.fixture(scope="module", params=STORED_IN_CPU)
def chapter(request):
    return request.param, nbformat.read(CHAPTERS / request.param, as_version=4)


def test_stored_outputs_come_from_one_run_in_order(chapter):
    """Every code cell ran once, top to bottom, in one kernel: execution counts 1, 2, 3, ...
    A cell added or edited and run alone afterwards breaks the sequence."""
    name, nb = chapter
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{name}: execution counts {counts}; re-run the whole chapter "
        "(LORAKIT_PRESET=cpu jupyter nbconvert --to notebook --execute --inplace ...)"
    )


def test_stored_outputs_hold_no_errors(chapter):
    name, nb = chapter
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"{name}, cell {i}: {out.get('ename')}"
            assert "Traceback (most recent call last)" not in out.get("text", ""), (
                f"{name}, cell {i}"
            )


def test_stored_outputs_come_from_the_cpu_preset(chapter):
    name, nb = chapter
    first = next(_text(c) for c in nb.cells if c.cell_type == "code" and "describe()" in c.source)
    assert first.startswith("preset: cpu"), f"{name}: stored outputs come from {first.strip()!r}"


def test_chapter0_lists_the_recorded_runs_that_exist():
    nb = nbformat.read(CHAPTERS / "00_start_here.ipynb", as_version=4)
    stored = _text(_cell(nb, "recorded runs in data/runs/")).splitlines()
    on_disk = sorted(
        p.relative_to(runs.RUNS_DIR).with_suffix("").as_posix()
        for p in runs.RUNS_DIR.rglob("*.json")
    )
    assert stored[0] == f"{len(on_disk)} recorded runs in data/runs/:", (
        f"chapter 0 stores {stored[0]!r} but data/runs/ holds {len(on_disk)}: re-run chapter 0"
    )
    assert [line.strip() for line in stored[1:]] == on_disk


def test_chapter4_counts_gpt3_live():
    nb = nbformat.read(CHAPTERS / "04_lora_in_gpt2.ipynb", as_version=4)
    text = _text(_cell(nb, '"GPT-3 175B": (96, 12288, 96, 2048)'))
    assert re.search(
        r"GPT-3 175B\s+96\s+12288\s+174,604,259,328\s+18,874,368\s+18,874,368", text
    ), text
    assert "174.6B frozen parameters, 18.9M trained by LoRA" in text


def test_chapter4_adapters_learned_their_own_task():
    """The stored table of section 7: each adapter beats the base and the other adapter on its
    task.
    """
    nb = nbformat.read(CHAPTERS / "04_lora_in_gpt2.ipynb", as_version=4)
    text = _text(_cell(nb, "def predicted("))
    rows = {}
    for line in text.splitlines():
        found = re.findall(r"(\d+\.\d)%", line)
        if len(found) == 2:
            rows[line.split("  ")[0].strip()] = [float(x) for x in found]
    base = rows["Φ0, no adapter"]
    first, second = rows["adapter for text -> MR"], rows["adapter for MR -> template"]
    assert first[0] > base[0] + 10 and first[0] > second[0] + 10, rows
    assert second[1] > base[1] + 5 and second[1] > first[1] + 5, rows
