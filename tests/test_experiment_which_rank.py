"""Chapters 8-9's experiment (``python -m lorakit.experiments which-rank``), end to end in ``ci``."""

from __future__ import annotations

import json
import math

import pytest
import torch

import lorakit
from lorakit.data import load_e2e
from lorakit.data.template import template_texts
from lorakit.evaluate import score_all
from lorakit.experiments import which_rank as wr


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    out = tmp_path_factory.mktemp("which_rank")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # faster for tiny models; and --jobs 2's workers use 1 thread too
    try:
        wr.main(["--preset", "ci", "--out", str(out), "--no-progress"])
    finally:
        torch.set_num_threads(threads)
    record = json.loads((out / "ch08_which_rank_ci.json").read_text())
    return record, out / "ch09_adapters_ci.safetensors"


@pytest.mark.usefixtures("one_torch_thread")
def test_jobs_2_gives_the_record_and_tensors_of_jobs_1(recorded, tmp_path):
    record, path = recorded
    wr.main(["--preset", "ci", "--out", str(tmp_path), "--no-progress", "--jobs", "2"])
    again = json.loads((tmp_path / "ch08_which_rank_ci.json").read_text())

    def without_timings(obj):
        if isinstance(obj, dict):
            return {k: without_timings(v) for k, v in obj.items()
                    if k not in ("train_s", "decode_s", "timing")}
        return [without_timings(v) for v in obj] if isinstance(obj, list) else obj

    assert without_timings(again["results"]) == without_timings(record["results"])
    assert again["results"]["timing"]["jobs"] == 2 and again["data"] == record["data"]
    assert record["data"]["source"] in ("synthetic", "real") and record["source_sha256"]
    tensors, _ = wr.load_adapters(path)
    tensors2, _ = wr.load_adapters(tmp_path / "ch09_adapters_ci.safetensors")
    assert list(tensors) == list(tensors2)
    assert all(torch.equal(tensors[k], tensors2[k]) for k in tensors)


def test_plan_trains_each_configuration_once_and_table5_has_one_budget():
    settings = wr.PRESETS["gpu"]
    jobs = wr.plan_jobs(settings)
    keys = [(j["targets"], j["r"], j["seed"]) for j in jobs]
    assert len(keys) == len(set(keys))
    assert {r * len(t) for t, r, _ in keys if t in wr.TABLE5 and r == 8 // len(t)} == {8}
    required = [j for j in jobs if j["required"]]
    assert jobs[:len(required)] == required  # optional seeds come last (the budget may skip them)
    assert ((("q", "v"), 64, 1) in keys) and ((("q", "v"), 8, 0) in keys)


def test_record_tables_and_metrics(recorded):
    record, _ = recorded
    res = record["results"]
    assert record["name"] == "ch08_which_rank_ci" and record["preset"] == "ci"
    t5 = res["table5"]
    assert [tuple(x["targets"]) for x in t5] == list(wr.TABLE5)
    assert len({x["trainable_params"] for x in t5}) == 1  # one parameter budget
    ranks = wr.PRESETS["ci"]["ranks"]
    assert len(res["table6"]) == len(wr.TABLE6_SETS) * len(ranks)
    for run in res["runs"]:
        for key in ("dev_loss", "bleu", "rouge_l", "ser", "train_s"):
            assert math.isfinite(run[key]), (key, run)
        assert 0 <= run["bleu"] <= 100 and run["steps"] == wr.PRESETS["ci"]["steps"]
        assert run["ser"] >= 0  # a percentage; it can pass 100 (added slots)
    qv = {x["r"]: x["trainable_params"] for x in res["table6"] if x["targets"] == ["q", "v"]}
    assert qv[2] == 2 * qv[1] and qv[8] == 8 * qv[1]  # linear in r
    for row in t5 + res["table6"]:
        assert row["ser_mean"] == pytest.approx(
            sum(row["ser"]) / len(row["ser"])) and len(row["ser"]) == len(row["seeds"])
    test = load_e2e("test", res["data"]["source"])[:wr.PRESETS["ci"]["test_mrs"]]
    assert res["template"]["metrics"] == score_all(template_texts([x.mr for x in test]),
                                                   [list(x.refs) for x in test],
                                                   mrs=[x.mr for x in test])
    assert res["template"]["metrics"]["ser"] == 0.0  # it says every slot, by construction
    table = wr.format_table(t5, res["template"]).splitlines()
    assert "SER %" in table[0] and table[1].split()[0] == "template"
    assert f"{res['template']['metrics']['bleu']:.1f}" in table[1]
    assert "not recorded" not in "\n".join(table) and len(table) == len(t5) + 2


def test_tables_of_a_record_without_ser_or_template_say_not_recorded(recorded):
    keep = ("targets", "r", "seeds", "trainable_params", "bleu", "bleu_mean", "bleu_std",
            "rouge_l", "rouge_l_mean", "rouge_l_std", "dev_loss", "dev_loss_mean", "dev_loss_std")
    old = [{k: x[k] for k in keep} for x in recorded[0]["results"]["table5"]]
    table = wr.format_table(old, None).splitlines()
    assert table[1].split()[0] == "template" and table[1].count("not recorded") == 3
    assert all("not recorded" in line for line in table[2:])  # the SER column
    assert all(line.count("not recorded") == 1 for line in table[2:])


def test_subspace_grids_are_similarities(recorded):
    record, _ = recorded
    sub, meta = record["results"]["subspace"], record["results"]["adapters"]
    grids = [g for m in ("q", "v") for g in sub["fig3_6_7"][m].values()]
    grids += [sub["fig4"][k] for k in ("q", "v", "random")]
    grids += [sub["fig3_cross_seed"][m] for m in ("q", "v")]
    for g in grids:
        t = torch.tensor(g)
        assert t.min() >= 0 and t.max() <= 1 + 1e-6
    assert torch.tensor(grids[0]).shape == (meta["r_low"], meta["r_high"])
    assert torch.tensor(sub["fig4"]["q"]).shape == (meta["r_high"], meta["r_high"])
    assert torch.tensor(sub["fig3_cross_seed"]["v"]).shape == (meta["r_low"], meta["r_high"])
    for m in ("q", "v"):
        for row in sub["table7"][m].values():
            assert row["amplification"] > 0 and row["dW_norm"] > 0
    assert len(sub["fig8"]["random"]) == meta["r_high"]


def test_saved_tensors_have_the_right_shapes_and_reproduce_the_record(recorded):
    record, path = recorded
    assert path.stat().st_size < 2_000_000
    tensors, meta = wr.load_adapters(path)
    cfg = record["results"]["base"]["config"]
    d, mid = cfg["n_embd"], meta["analysis_layer"]
    for r, s in ((meta["r_low"], 0), (meta["r_high"], 0), (meta["r_high"], 1), (4, 0)):
        for m in ("q", "v"):
            assert tensors[f"qv.r{r}.s{s}.l{mid}.{m}.A"].shape == (r, d)
            assert tensors[f"qv.r{r}.s{s}.l{mid}.{m}.B"].shape == (d, r)
    assert tensors[f"W.l{mid}.q"].shape == (d, d)
    again = wr.subspace_analysis(tensors, meta)  # from the fp16/bf16 file, on the CPU
    sub = record["results"]["subspace"]
    key = str(mid)
    assert torch.allclose(torch.tensor(again["fig3_6_7"]["q"][key]),
                          torch.tensor(sub["fig3_6_7"]["q"][key]), atol=2e-2)
    assert again["table7"]["q"]["4"]["amplification"] == pytest.approx(
        sub["table7"]["q"]["4"]["amplification"], rel=5e-2)


def test_claims_are_evaluated_from_the_record(recorded):
    rows = wr.paper_claims(recorded[0]["results"])
    assert len(rows) == 7 and all(isinstance(x["holds"], bool) for x in rows[2:])
    assert all(x["holds"] in (True, False, None) for x in rows)
    assert [("ΔWq" in x["claim"], "ΔWv" in x["claim"]) for x in rows[3:]] == \
        [(True, False)] * 2 + [(False, True)] * 2  # Table 7 checked for both matrices
    text = wr.format_claims(rows)
    assert text.count("ours:") == 7 and ("yes" in text or "no" in text)
    res = recorded[0]["results"]
    assert wr.format_table(res["table5"], res["template"]).count("\n") == len(wr.TABLE5) + 1


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


def test_clear_difference():
    assert wr.clear_difference([10.0, 10.2], [12.0, 12.1])
    assert not wr.clear_difference([10.0, 11.0], [11.2, 12.0])
    assert wr.clear_difference([1.0], [1.5])  # one seed each: any gap counts
    with pytest.raises(ValueError, match="at least one value"):
        wr.clear_difference([], [1.0])


def test_unknown_preset_is_an_error():
    with pytest.raises(ValueError, match="Unknown preset 'huge'"):
        wr.run_which_rank("huge")


def test_base_narrower_than_the_ranks_is_an_error(tiny_tokenizer):
    from conftest import make_tiny_gpt2

    narrow = make_tiny_gpt2(n_embd=8, n_head=2)
    before = {k: v.clone() for k, v in narrow.state_dict().items()}
    with pytest.raises(ValueError, match="only 8 wide"):
        wr.run_which_rank("ci", loaded=(narrow, tiny_tokenizer, None), progress=False)
    assert all(torch.equal(before[k], v) for k, v in narrow.state_dict().items())


def test_missing_or_foreign_adapter_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="which-rank"):
        wr.load_adapters(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a chapter-9 adapter file"):
        wr.load_adapters(bad)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not a chapter-9 adapter file"):
        wr.load_adapters(foreign)
