"""What the README and chapters 5-7 say about the shipped GPU records' reproducibility, checked on
the records themselves: a run made again (another session, another machine, beside other runs
under MPS) gives the same numbers and texts, only its timings differ; a run chapter 7 imports
from chapter 6 carries the numbers and texts of the record it names; and the records the README
calls stale are the ones ``python -m lorakit.runs check`` finds stale."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

RUNS = Path(__file__).resolve().parents[1] / "data" / "runs"

# What a run measures about the machine rather than computes: wall times, rates, the commit and
# date it was made at. Everything else of two runs of one configuration must be equal.
TIMING_KEYS = {
    "seconds",
    "tokens_per_s",
    "tokens_per_s_overall",
    "train_wall_s",
    "train_s",
    "build_s",
    "step_time_s",
    "generate_wall_s",
    "capture_s",
    "wall_s",
    "mfu",
    "mfu_without_lm_head",
    "achieved_tflops",
    "matmul_peak_tflops",
    "commit",
    "date",
}


def _record(rel: str) -> dict:
    path = RUNS / rel
    if not path.exists():
        pytest.skip(f"{rel} is not among the shipped records")
    return json.loads(path.read_text())


def _differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Paths at which ``a`` and ``b`` differ, timing keys left out."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}/{k}: only on one side" for k in set(a) ^ set(b) if k not in TIMING_KEYS]
        for k in sorted(set(a) & set(b)):
            if k not in TIMING_KEYS:
                out += _differences(a[k], b[k], f"{where}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} against {len(b)} items"]
        pairs = enumerate(zip(a, b))
        return [d for i, (x, y) in pairs for d in _differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {str(a)[:60]} against {str(b)[:60]}"]


def test_differences_skip_timings_only():
    a = {"wall_s": 1.0, "results": {"bleu": 40.0, "history": [{"seconds": 2.0, "loss": 3.0}]}}
    b = {"wall_s": 9.0, "results": {"bleu": 40.0, "history": [{"seconds": 5.0, "loss": 3.0}]}}
    assert _differences(a, b) == []
    b["results"]["history"][0]["loss"] = 3.5
    assert _differences(a, b) == ["/results/history[0]/loss: 3.0 against 3.5"]


def test_three_builds_of_the_offline_base_have_the_same_weights():
    first = _record("ch05_pretrain_gpu.json")
    for rel in (
        "ch05_pretrain_gpu_rebuild/ch05_pretrain_gpu.json",
        "ch05_pretrain_gpu_alone/ch05_pretrain_gpu.json",
    ):
        other = _record(rel)
        assert other["results"]["weights_sha256"] == first["results"]["weights_sha256"], rel
        assert _differences(first["results"], other["results"]) == [], rel


def test_a_run_under_mps_beside_six_others_repeats_the_run_made_alone():
    alone = _record("ch06_finetune_gpu_solo/lora-lr0.0002-s0.json")
    under_mps = _record("ch06_finetune_gpu_mpscheck/lora-lr0.0002-s0.json")
    assert alone["commit"] != under_mps["commit"]  # made in two sessions
    assert _differences(alone["results"], under_mps["results"]) == []
    lora = under_mps["results"]["methods"]["lora"]
    assert len(lora["hyps"]) == 552 and lora["history"], "the texts and the losses are compared"
    # and it did run beside others: its steps took several times as long as alone
    assert lora["step_time_s"] > 3 * alone["results"]["methods"]["lora"]["step_time_s"]


def test_the_solo_run_is_seed_0_of_chapter_6_grid():
    solo = _record("ch06_finetune_gpu_solo/lora-lr0.0002-s0.json")
    grid = _record("ch06_finetune_gpu/lora-lr0.0002-s0.json")
    assert solo["preset"] == grid["preset"] and solo["seed"] == grid["seed"]
    # the numbers and texts; the provenance (source hashes) may differ: records of one
    # configuration are re-made at later commits one at a time
    assert _differences(solo["results"], grid["results"]) == []


def test_chapter_7_imported_runs_carry_their_chapter_6_twins_numbers_and_texts():
    folder = RUNS / "ch07_baselines_gpu"
    imported = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    imported = [r for r in imported if r["results"].get("imported_from")]
    if not imported:
        pytest.skip("no imported chapter 7 record is shipped")
    methods = {"ft": "full", "lora": "lora"}
    for record in imported:
        ch7 = record["results"]
        twin = _record(ch7["imported_from"])
        assert twin["seed"] == record["seed"], record["name"]
        ch6 = twin["results"]["methods"][methods[ch7["method"]]]
        for key in ("dev_loss", "metrics", "hyps", "steps", "tokens_seen"):
            assert ch7[key] == ch6[key], (record["name"], key)
        assert len(ch7["hyps"]) == 552
        # the two experiments log at different steps; where both logged, the losses are the same
        ch6_loss = {row["step"]: row["loss"] for row in ch6["history"]}
        both = [row for row in ch7["history"] if row["step"] in ch6_loss]
        assert len(both) > 10, record["name"]
        assert all(row["loss"] == ch6_loss[row["step"]] for row in both), record["name"]


def test_the_readme_states_which_records_are_stale():
    """The README's count of stale records is `python -m lorakit.runs check`'s, and its records
    table marks **stale** exactly the folders that hold a stale record (with the count, where a row
    gives one). The count changes with every change of a module a record loaded, so this keeps the
    sentence a reader trusts from drifting."""
    from lorakit.runs.check import check_runs

    readme = (RUNS.parents[1] / "README.md").read_text()
    said = re.search(r"\*\*(\d+) of the (\d+) records (?:are|is) stale at this commit\*\*", readme)
    assert said, "the README's 'Recorded runs' section lost its '**N of the M records are stale'"
    findings = check_runs(RUNS)
    stale = [f.path.relative_to(RUNS).as_posix() for f in findings if f.stale]
    assert (int(said[1]), int(said[2])) == (len(stale), len(findings)), (
        f"the README says {said[1]} of {said[2]} records are stale; `python -m lorakit.runs check` "
        f"finds {len(stale)} of {len(findings)}: {stale}"
    )
    rows = {m[1]: line for line in readme.splitlines() if (m := re.match(r"\| `([\w.-]+)/", line))}
    per_folder = Counter(path.split("/")[0] for path in stale)
    for folder, row in rows.items():
        marked = "**stale**" in row
        assert marked == (folder in per_folder), f"the records table's row for {folder}/ " + (
            "says **stale**, but none of its records is" if marked else "does not say **stale**"
        )
        count = re.search(r"(\d+) \*\*stale\*\*", row)
        if count:
            assert int(count[1]) == per_folder[folder], (
                f"{folder}/: the README says {count[1]} stale, `runs check` {per_folder[folder]}"
            )
