"""Chapter 7's experiment (Table 3 and Figure 2 on our task): end to end in the ci preset."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_gpt2

from lorakit import analysis
from lorakit.baselines import METHODS, apply_method
from lorakit.data import load_e2e
from lorakit.data.template import template_texts
from lorakit.evaluate import score_all
from lorakit.experiments import baselines as exp
from lorakit.models import BaseInfo

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FIXTURE = Path(__file__).parent / "fixtures" / "e2e_real"
TIMINGS = {"train_wall_s", "generate_wall_s", "timing"}


def without_timings(obj):
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if k not in TIMINGS}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj


def test_ci_run_writes_a_record_of_table3_and_figure2(tmp_path, capsys):
    exp.main(["--preset", "ci", "--out", str(tmp_path), "--device", "cpu"])
    out = capsys.readouterr().out
    assert "[13/13]" in out and "wrote" in out  # progress lines and the table were printed
    record = json.loads((tmp_path / "ch07_baselines_ci.json").read_text())
    assert record["preset"] == "ci" and record["wall_s"] > 0 and record["device"]
    res = record["results"]
    settings = exp.PRESETS["ci"]
    assert list(res["table3"]) == list(exp.TABLE3) and set(exp.TABLE3) == set(METHODS)
    d, L = res["base"]["config"]["n_embd"], res["base"]["config"]["n_layer"]
    for method, row in res["table3"].items():
        seeds = settings["seeds"].get(method, (0,))
        assert row["seeds"] == list(seeds) and len(row["runs"]) == len(seeds)
        assert row["lr"] == exp.LR[method] and 0 < row["trainable_params"] <= row["total_params"]
        for run in row["runs"]:
            assert set(run["metrics"]) == {"bleu", "rouge_l", "nist", "ser"}
            assert all(math.isfinite(v) for v in run["metrics"].values())
            assert run["metrics"]["ser"] >= 0  # a percentage; it can pass 100 (added slots)
            assert math.isfinite(run["final_loss"]) and math.isfinite(run["dev_loss"])
            assert run["steps"] == settings["steps"] and len(run["samples"]) == 3
            assert all("\ufffd" not in s["generated"] for s in run["samples"])
        assert all(math.isfinite(v) for v in row["mean"].values())
        if len(seeds) > 1:
            assert all(v is not None and v >= 0 for v in row["std"].values())
        else:
            assert all(v is None for v in row["std"].values())
        if method in ("ft", "ft_top2", "bitfit"):
            assert row["formula"] is None
        else:
            assert row["trainable_params"] == row["formula"]
    t3 = res["table3"]
    assert t3["ft"]["trainable_params"] == t3["ft"]["total_params"]
    assert t3["lora"]["formula"] == analysis.lora_params(2 * L, d, 4)
    n = settings["sizes"]["prefix_layer"]
    assert t3["prefix_layer"]["formula"] == analysis.prefix_layer_params(L, d, n - n // 4, n // 4)
    for method, sizes in settings["sweep"].items():
        points = res["figure2"][method]["points"]
        assert [p["size"] for p in points] == list(sizes)
        assert [p["from_table3"] for p in points] == [s == settings["sizes"][method] for s in sizes]
        counts = [p["trainable_params"] for p in points]
        assert counts == sorted(counts) and all(p["formula"] == p["trainable_params"] for p in points)
    timing = res["timing"]
    assert timing["total_s"] >= timing["table3_s"] + timing["figure2_s"] > 0
    test = load_e2e("test", res["data"]["source"])[:settings["test_mrs"]]
    assert res["template"]["metrics"] == score_all(template_texts([r.mr for r in test]),
                                                   [list(r.refs) for r in test],
                                                   mrs=[r.mr for r in test])
    assert res["template"]["metrics"]["ser"] == 0.0  # it says every slot, by construction
    table = exp.table3_text(res).splitlines()
    assert table[0].split()[:3] == ["method", "trainable", "formula"] and len(table) == 10
    assert table[0].split()[-2:] == ["SER", "%"]
    assert table[1].split()[0] == "template" and "not recorded" not in "\n".join(table)
    assert f"{res['template']['metrics']['bleu']:.1f}" in table[1]
    assert "±" in table[-1]  # LoRA has two seeds in ci
    assert "template" in out.split("wrote")[0]  # the printed table has the template row


def test_table3_of_a_record_without_ser_or_template_says_not_recorded():
    def run(bleu):
        return {"seed": 0, "metrics": {"bleu": bleu, "rouge_l": 50.0, "nist": 2.0}}

    old = {"table3": {m: {"label": exp.LABELS[m], "size": None, "trainable_params": 10,
                          "formula": None, "lr": exp.LR[m], "seeds": [0],
                          "runs": [run(40.0)], **exp.summarise([run(40.0)])}
                      for m in exp.TABLE3}}
    table = exp.table3_text(old).splitlines()
    assert table[1].split()[0] == "template" and table[1].count("not recorded") == 4
    assert all(line.endswith("not recorded") for line in table[2:])  # the SER column
    assert all("40.0" in line for line in table[2:])
    new = {**old, "template": {"metrics": {"bleu": 48.5, "rouge_l": 60.0, "nist": 5.0,
                                           "ser": 0.0}}}
    assert exp.table3_text(new).splitlines()[1].split()[-4:] == ["48.5", "60.0", "5.00", "0.0"]


def test_jobs_2_writes_the_record_of_jobs_1_on_the_data_asked_for(tmp_path):
    args = ["--preset", "ci", "--device", "cpu", "--quiet", "--data", str(FIXTURE)]
    exp.main(args + ["--out", str(tmp_path / "one")])
    exp.main(args + ["--out", str(tmp_path / "two"), "--jobs", "2"])
    one, two = (json.loads((tmp_path / d / "ch07_baselines_ci.json").read_text())
                for d in ("one", "two"))
    assert without_timings(one["results"]) == without_timings(two["results"])
    assert two["results"]["timing"]["jobs"] == 2 and two["config"]["jobs"] == 2
    assert one["results"]["data"]["source"] == "dir" and one["results"]["data"]["train_mrs"] == 3
    assert one["data"] == two["data"] and one["data"]["path"] == str(FIXTURE.resolve())
    assert set(one["data"]["files"]) == {"trainset.csv", "devset.csv", "testset_w_refs.csv"}


def test_plan_reuses_the_table3_point_in_the_sweep():
    settings = exp.PRESETS["gpu"]
    jobs = exp.plan(settings)
    table = [j for j in jobs if j[0] == "table3"]
    assert len(table) == 8 + 2 * 3  # LoRA and both adapters have 3 seeds
    extra = [j for j in jobs if j[0] == "figure2"]
    assert len(extra) == sum(len(s) - 1 for s in settings["sweep"].values())
    assert all(size != settings["sizes"][m] for _, m, size, _ in extra)


def test_prompted_generator_returns_prompt_and_new_tokens_only(tiny_tokenizer):
    model = make_tiny_gpt2()
    sep = tiny_tokenizer(" ||", add_special_tokens=False)["input_ids"]
    report = apply_method(model, "prefix_layer", **exp.method_kwargs("prefix_layer", 4, sep))
    ids = torch.tensor([tiny_tokenizer("name[A] ||")["input_ids"]])
    mask = torch.ones_like(ids)
    out = exp.PromptedGenerator(model, report.prepare_batch).generate(
        ids, mask, max_new_tokens=5, do_sample=False, pad_token_id=0, min_new_tokens=5)
    assert torch.equal(out[:, :ids.shape[1]], ids) and out.shape[1] == ids.shape[1] + 5
    assert int(out.max()) < model.config.vocab_size  # no special id leaks into the text


def test_unknown_preset_and_a_base_too_short_for_the_prefixes(tiny_tokenizer):
    info = BaseInfo(source="test", name="tiny", n_params=0, tokenizer="tiny", vocab_size=300)
    with pytest.raises(ValueError, match="Unknown preset"):
        exp.run_baselines("huge", progress=False)
    with pytest.raises(ValueError, match="Unknown settings"):
        exp.run_baselines("ci", progress=False, overrides={"stepz": 3})
    short = make_tiny_gpt2(n_positions=16)
    with pytest.raises(ValueError, match="no room for"):
        exp.run_baselines("ci", loaded=(short, tiny_tokenizer, info), device="cpu",
                          progress=False)


def test_progress_lines_name_the_shipped_data_without_this_machines_path():
    from lorakit.data.sources import data_source

    shipped = data_source("synthetic")
    label = exp.data_label(shipped)
    assert "data/e2e" in label and str(shipped.root.resolve()) not in label
    assert "tests/fixtures/e2e_real" in exp.data_label(data_source(FIXTURE))  # the user's folder
