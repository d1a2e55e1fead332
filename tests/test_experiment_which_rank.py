"""Chapters 8-9's grid (``which-rank``), its report and chapter 9's subspace report, in ``ci``."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import ci_grid

import lorakit
from lorakit.experiments import _grid
from lorakit.experiments import subspace_report as sub
from lorakit.experiments import which_rank as wr
from lorakit.experiments import which_rank_report as rep

pytestmark = pytest.mark.usefixtures("fixed_source")


@pytest.fixture(scope="module")
def grid(tmp_path_factory, fixed_source):
    return ci_grid(tmp_path_factory, "ch08", wr.main, "--no-progress")


def test_plan_each_configuration_once_per_seed_and_factors_where_chapter_9_reads():
    settings = wr.PRESETS["gpu"]
    specs = wr.plan(settings)
    keys = [(tuple(s["targets"]), s["r"], s["seed"]) for s in specs]
    assert len(keys) == len(set(keys)) == len(wr.configs(settings)) * 3
    assert {r * len(t) for t, r in wr.configs(settings)[:7]} == {8}  # Table 5: one budget
    assert [s["seed"] for s in specs] == sorted(s["seed"] for s in specs)  # seed-major
    assert {(s["r"], s["seed"]) for s in specs if s["factors"]} == {
        (r, s) for r in (4, 8, 64) for s in (0, 1, 2)
    }
    assert all(s["targets"] == ["q", "v"] for s in specs if s["factors"])
    assert settings["epochs"] >= 2 and settings["test_mrs"] is None
    cpu = wr.plan(wr.PRESETS["cpu"])
    assert {s["seed"] for s in cpu if not s["factors"]} == {0}
    assert {s["seed"] for s in cpu if s["factors"]} == {0, 1}  # independent seeds for ch. 9


def test_one_record_per_run_with_factors_beside(grid):
    settings = wr.PRESETS["ci"]
    specs = wr.plan(settings)
    names = {p.stem for p in grid.glob("*.json")}
    assert names == {s["id"] for s in specs} | {"template", "base_weights"}
    for spec in specs:
        r = json.loads((grid / f"{spec['id']}.json").read_text())["results"]
        assert (r["targets"], r["r"], r["seed"]) == (spec["targets"], spec["r"], spec["seed"])
        assert set(r["bootstrap"]) == {"bleu", "rouge_l", "ser"} and len(r["hyps"]) == 4
        assert math.isfinite(r["dev_loss"]) and len(r["evals"]) == 1
        if spec["factors"]:
            tensors = _grid.load_tensors(grid, {"name": spec["id"], "results": r})
            d = r["base"]["config"]["n_embd"]
            assert tensors["l1.q.A"].shape == (spec["r"], d)
            assert tensors["l1.v.B"].shape == (d, spec["r"])
            assert all(0 <= v < 10 for v in r["a_moved"].values())
        else:
            assert "tensors_file" not in r and "a_moved" not in r


def test_report_tables_and_claims(grid):
    out = rep.report_folder(grid, wr.PRESETS["ci"])
    assert not out["missing"] and not out["stale"] and out["gpu_minutes"] > 0
    assert [tuple(x["targets"]) for x in out["table5"]] == list(wr.TABLE5)
    assert len({x["trainable_params"] for x in out["table5"]}) == 1  # one parameter budget
    assert len(out["table6"]) == len(wr.TABLE6_SETS) * len(wr.PRESETS["ci"]["ranks"])
    for row in out["table5"] + out["table6"]:
        assert row["status"] == "run" and row["seeds"] == [0, 1]
        assert row["bleu"]["n"] == 2 and row["bleu"]["sd"] is not None
    assert {c["chapter"] for c in out["claims"]} == {8} and len(out["claims"]) == 4
    assert {c["verdict"] for c in out["claims"]} <= {"reproduced", "not reproduced", "undetermined"}
    table = rep.table_text(out["table5"], out["template"]).splitlines()
    assert table[1].split()[0] == "template" and len(table) == len(wr.TABLE5) + 2


def test_missing_runs_are_not_run_and_one_seed_is_undetermined(grid, tmp_path):
    records = [r for r in _grid.load_runs(grid) if not r["name"].endswith("-s1")]
    out = rep.report(records, wr.PRESETS["ci"])
    assert "q+v-r1-s1" in {s["id"] for s in out["missing"]}
    claim = out["claims"][0]
    assert claim["claim"].startswith("a very low rank") and claim["verdict"] == "undetermined"
    none = rep.report([], wr.PRESETS["ci"])
    assert {c["verdict"] for c in none["claims"]} == {"not run"}
    assert all(x["status"] == "not run" for x in none["table5"])
    assert "not run" in rep.table_text(none["table5"], None)


def test_subspace_report_reads_independent_seed_pairs(grid):
    out = sub.report(_grid.load_runs(grid), grid)
    meta = out["meta"]
    assert meta["r_low"] == 8 and meta["r_high"] == 16 and meta["analysis_layer"] == 1
    f3 = out["figure3"]
    assert f3["independent"]["pairs"] == [(0, 1), (1, 0)]
    assert f3["same_seed"]["pairs"] == [(0, 0), (1, 1)]
    for kind in ("independent", "same_seed"):
        g = torch.tensor(f3[kind]["grids"]["q"]["1"])
        assert g.shape == (8, 16) and g.min() >= 0 and g.max() <= 1 + 1e-6
    assert out["figure4"]["pairs"] == [(0, 1)]
    assert torch.tensor(out["figure4"]["random"]).shape == (16, 16)
    for m in ("q", "v"):
        for r in ("4", "16"):
            x = out["table7"][m][r]
            assert x["seeds"] == [0, 1] and len(x["amplification"]["values"]) == 2
            assert x["amplification"]["sd"] is not None
    assert len(out["figure8"]["random"]) == 16 and set(out["figure8"]) == {"4", "16", "random"}
    assert out["runs_read"] == sorted(f"q+v-r{r}-s{s}" for r in (4, 8, 16) for s in (0, 1))
    rows = out["convergence"]
    assert len(rows) == 6 and all(x["converged"] is None for x in rows)  # one epoch: not judged
    assert {c["chapter"] for c in out["claims"]} == {9} and len(out["claims"]) == 8
    table7 = [c for c in out["claims"] if "(r=4)" in c["claim"]]
    for c in table7:  # the paper's Table 7 is of Wq: a ΔWv row says its numbers are Wq's
        assert c["paper"].startswith("Wq's (Table 7 has Wq only)") == c["claim"].startswith("ΔWv")


def test_claim_rows_for_the_claims_table(grid, tmp_path):
    rows = wr.claim_rows(tmp_path)  # no records: every claim of chapters 8 and 9 is "not run"
    assert {r["verdict"] for r in rows} == {"not run"} and {r["chapter"] for r in rows} == {8, 9}
    folder = tmp_path / f"{wr.GRID}_ci"
    folder.symlink_to(grid)
    judged = wr.claim_rows(tmp_path, preset="ci")
    assert len(judged) == len(rows) and "not run" not in {r["verdict"] for r in judged}


def test_convergence_rule():
    runs = {
        (8, 0): {
            "evals": [{"eval_loss": 1.20}, {"eval_loss": 1.195}],
            "a_moved": {"x": 0.5},
            "schedule": {"epochs": 2},
        },
        (8, 1): {"evals": [{"eval_loss": 1.30}, {"eval_loss": 1.20}], "a_moved": {"x": 0.4}},
    }
    rows = sub.convergence(runs)
    assert [r["converged"] for r in rows] == [True, False]
    assert rows[0]["last_epoch_change"] == pytest.approx(0.005 / 1.2)


@pytest.mark.parametrize(
    "values, threshold, expected",
    [
        ([0.7, 0.75, 0.72], 0.5, "reproduced"),
        ([0.2, 0.25, 0.22], 0.5, "not reproduced"),
        ([0.4, 0.6, 0.5], 0.5, "undetermined"),
        ([0.9], 0.5, "undetermined"),
    ],
)
def test_subspace_claims_rule(values, threshold, expected):
    assert sub._side(values, threshold, above=True)[0] == expected


def test_base_weight_is_the_slice_that_lora_updates(tiny_gpt2):
    before = {m: wr.base_weight(tiny_gpt2, 1, m).clone() for m in "qv"}
    lorakit.apply_lora(tiny_gpt2, lorakit.LoRAConfig(r=2, alpha=4, targets=["q", "v"]))
    factors = lorakit.lora_factors(tiny_gpt2)
    with torch.no_grad():
        for _, B in factors.values():
            B.normal_()
    lorakit.merge_lora(tiny_gpt2)
    for m in "qv":
        A, B = factors[f"transformer.h.1.attn.c_attn.{m}"]
        expected = before[m] + 2.0 * (B @ A)  # scaling alpha / r = 2
        assert torch.allclose(wr.base_weight(tiny_gpt2, 1, m), expected, atol=1e-5)


def test_unknown_preset_and_a_base_narrower_than_the_ranks(tiny_tokenizer):
    from conftest import make_tiny_gpt2

    with pytest.raises(ValueError, match="Unknown preset 'huge'"):
        wr.run_which_rank("huge")
    narrow = make_tiny_gpt2(n_embd=8, n_head=2)
    before = {k: v.clone() for k, v in narrow.state_dict().items()}
    with pytest.raises(ValueError, match="only 8 wide"):
        wr.run_which_rank("ci", loaded=(narrow, tiny_tokenizer, None), progress=False)
    assert all(torch.equal(before[k], v) for k, v in narrow.state_dict().items())


def test_a_corrupt_tensor_file_names_the_record(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="tensors of record q\\+v-r8-s0"):
        _grid.load_tensors(
            tmp_path, {"name": "q+v-r8-s0", "results": {"tensors_file": "x.safetensors"}}
        )


def test_clear_difference_the_exercises_rule_of_thumb():
    assert wr.clear_difference([10.0, 10.2], [12.0, 12.1])
    assert not wr.clear_difference([10.0, 11.0], [11.2, 12.0])
    assert wr.clear_difference([1.0], [1.5])  # one seed each: std 0, so any gap counts
    with pytest.raises(ValueError, match="at least one value"):
        wr.clear_difference([], [1.0])


def _t7(delta, weight, random, amp):
    def block(vals):
        return {"values": vals, "mean": sum(vals) / len(vals), "sd": None}

    x = {"seeds": [0, 1, 2], "delta": block(delta), "weight": block(weight)}
    x.update(random=block(random), amplification=block(amp))
    return {m: {"4": x} for m in ("q", "v")}


def test_table7_emphasis_claim_can_fail_and_amplification_needs_more_than_one():
    # the paper's numbers: onto ΔW 0.32, onto Wq's own 21.67, random 0.02 -> 0.014 of the way
    paperlike = sub.claims(None, _t7([0.32, 0.30, 0.34], [21.67] * 3, [0.02] * 3, [21.5, 20, 23]))
    emphasis = [c for c in paperlike if "does not emphasise" in c["claim"]]
    assert {c["verdict"] for c in emphasis} == {"reproduced"} and "0.014" in emphasis[0]["ours"]
    # ΔW along W's own top directions: onto ΔW = onto W -> the claim is not reproduced
    along = sub.claims(None, _t7([21.0, 21.5, 21.2], [21.67] * 3, [0.02] * 3, [1.2, 1.3, 1.1]))
    assert {c["verdict"] for c in along if "does not emphasise" in c["claim"]} == {"not reproduced"}
    # an amplification of 2-3 is above 1 but not "strong" by the stated threshold (> 5)
    weak = sub.claims(None, _t7([0.32] * 3, [21.67] * 3, [0.02] * 3, [2.0, 2.5, 3.0]))
    assert {c["verdict"] for c in weak if "amplifies" in c["claim"]} == {"not reproduced"}


def test_subspace_report_leaves_out_runs_of_another_build_and_survives_a_partial_grid(
    grid, capsys, monkeypatch
):
    records = _grid.load_runs(grid)
    for rec in records:
        if rec["name"] == "q+v-r16-s1":
            rec["results"] = {**rec["results"], "base": {"weights_sha256": "0" * 64}}
    out = sub.report(records, grid)
    assert out["skipped"] == ["q+v-r16-s1"] and "q+v-r16-s1" not in out["runs_read"]
    assert out["table7"]["q"]["16"]["seeds"] == [0]

    partial = [r for r in _grid.load_runs(grid) if not r["name"].startswith("q+v-r16")]
    part = sub.report(partial, grid)
    assert part["table7"]["q"]["16"]["seeds"] == []
    assert part["table7"]["q"]["16"]["delta"]["mean"] is None
    monkeypatch.setattr(sub._grid, "load_runs", lambda folder: partial)
    sub.main(["--preset", "ci", "--out", str(grid)])  # a grid without its r=16 runs yet
    assert "Table 7 Wq r=16: not run" in capsys.readouterr().out


def test_the_best_row_a_claim_compares_with_is_chosen_by_dev_loss():
    def row(r, bleu, dev):
        return {
            "status": "run",
            "r": r,
            "bleu": {"mean": bleu},
            "dev_loss": {"mean": dev},
        }

    rows = [row(1, 50.0, 1.30), row(8, 48.0, 1.10), row(64, 52.0, 1.20)]
    assert rep.best_by_dev_loss(rows)["r"] == 8  # not r=64, whose test BLEU is highest
    assert rep.best_by_dev_loss([{"status": "not run"}]) is None
