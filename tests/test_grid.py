"""lorakit.experiments._grid: one record per run, resumable, a time budget, tensors beside."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from lorakit.experiments import _grid


def _run(ctx: dict, spec: dict) -> dict:
    time.sleep(ctx.get("sleep", 0.0))
    out = {"seed": spec["seed"], "value": 10 * spec["seed"]}
    if spec.get("tensors"):
        out["_tensors"] = {"A": np.full((2, 3), spec["seed"], dtype=np.float32)}
    return out


SPECS = [{"id": _grid.run_id(m="toy", r=4, s=s), "seed": s} for s in range(3)]


def _grid_call(folder, specs=SPECS, **kw):
    ctx = {"base": torch.nn.Linear(1, 1), **kw.pop("ctx", {})}
    return _grid.run_grid(
        _run, specs, ctx, folder=folder, preset="ci", config={}, device="cpu", **kw
    )


def test_run_ids_are_file_safe_and_readable():
    assert _grid.run_id(method="lora", size=4, lr=2e-4, s=0) == "lora-size4-lr0.0002-s0"
    assert _grid.run_id(t=["q", "v"], r=64, s=1) == "q+v-r64-s1"
    assert _grid.run_id(method="ft", size=None, lr=5e-5, s=2) == "ft-lr5e-05-s2"


def test_records_are_written_once_and_a_second_call_makes_none(tmp_path):
    made = _grid_call(tmp_path)
    assert [r["name"] for r in made] == [s["id"] for s in SPECS]
    record = json.loads((tmp_path / "toy-r4-s1.json").read_text())
    assert record["results"] == {"seed": 1, "value": 10} and record["config"]["run"] == SPECS[1]
    assert record["source_sha256"] and record["wall_s"] >= 0
    assert _grid_call(tmp_path) == []  # all current: nothing to do
    assert len(_grid_call(tmp_path, force=True)) == 3
    loaded = _grid.load_runs(tmp_path)
    assert [r["current"] for r in loaded] == [True] * 3
    assert _grid.gpu_minutes(loaded) >= 0


def test_a_record_of_other_code_or_data_is_made_again(tmp_path, monkeypatch):
    _grid_call(tmp_path)
    monkeypatch.setattr("lorakit.runs.source_sha256", lambda *a: "another tree")
    assert [s["id"] for s in _grid.todo(SPECS, tmp_path)] == [s["id"] for s in SPECS]
    monkeypatch.undo()
    assert _grid.todo(SPECS, tmp_path) == []
    assert len(_grid.todo(SPECS, tmp_path, data_files={"train.jsonl": "0" * 64})) == 3
    (tmp_path / "toy-r4-s0.json").unlink()
    assert [s["id"] for s in _grid.missing(SPECS, _grid.load_runs(tmp_path))] == ["toy-r4-s0"]


def test_a_time_budget_leaves_the_rest_for_the_next_call(tmp_path):
    made = _grid_call(tmp_path, budget_s=0.3, ctx={"sleep": 0.2})
    assert len(made) == 1  # after one run of 0.2 s, a second would pass 0.3 s
    assert len(_grid_call(tmp_path, budget_s=0.3, ctx={"sleep": 0.2})) == 1
    assert len(_grid_call(tmp_path)) == 1


def test_tensors_go_beside_the_record_and_come_back(tmp_path):
    specs = [{**s, "tensors": True} for s in SPECS[:2]]
    live = _grid_call(None, specs)
    assert torch.equal(live[1]["tensors"]["A"], torch.full((2, 3), 1.0))
    _grid_call(tmp_path, specs)
    record = json.loads((tmp_path / "toy-r4-s1.json").read_text())
    assert record["results"]["tensors_file"] == "toy-r4-s1.safetensors"
    assert torch.equal(_grid.load_tensors(tmp_path, record)["A"], torch.full((2, 3), 1.0))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not a readable record"):
        _grid.load_runs(tmp_path)


def test_grid_folder_names_base_and_data_unless_they_are_the_defaults(tmp_path):
    assert _grid.grid_dir("ch07_baselines", "gpu").name == "ch07_baselines_gpu"
    assert _grid.grid_dir("ch07_baselines", "gpu", base="offline").name == "ch07_baselines_gpu"
    named = _grid.grid_dir("ch07_baselines", "gpu", base="gpt2-medium", data_kind="real")
    assert named.name == "ch07_baselines_gpu_gpt2-medium_real"
    assert _grid.grid_dir("x", "ci", out=tmp_path) == tmp_path


def _run_on_base(ctx: dict, spec: dict) -> dict:
    return {**_run(ctx, spec), "base": ctx["base_info"]}


def test_a_record_from_another_build_of_the_base_is_made_again(tmp_path):
    build_a, build_b = ({"name": "offline", "weights_sha256": c * 64} for c in "ab")

    def call(build):
        ctx = {"base": torch.nn.Linear(1, 1), "base_info": build}
        return _grid.run_grid(
            _run_on_base, SPECS, ctx, folder=tmp_path, preset="ci", config={}, device="cpu"
        )

    assert len(call(build_a)) == 3
    assert _grid.todo(SPECS, tmp_path, base=build_a) == []
    assert len(_grid.todo(SPECS, tmp_path, base=build_b)) == 3
    assert _grid.todo(SPECS, tmp_path, base={"name": "offline"}) == []  # cannot tell: current
    assert len(call(build_b)) == 3  # the grid is made again from the build loaded now
    assert {r["results"]["base"]["weights_sha256"] for r in _grid.load_runs(tmp_path)} == {"b" * 64}
    assert _grid.other_build(build_a, build_b) and not _grid.other_build(build_a, None)
