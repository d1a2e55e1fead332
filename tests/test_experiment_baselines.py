"""Chapter 7's grid (Table 3 and Figure 2): one record per run, resumable, a report of them."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from conftest import ci_grid, make_tiny_gpt2

from lorakit import analysis
from lorakit.baselines import METHODS, apply_method
from lorakit.data import load_e2e
from lorakit.data.template import template_texts
from lorakit.evaluate import score_all
from lorakit.experiments import baselines as exp
from lorakit.experiments import baselines_report as rep
from lorakit.models import BaseInfo

pytestmark = pytest.mark.usefixtures("fixed_source", "one_torch_thread")
FIXTURE = Path(__file__).parent / "fixtures" / "e2e_real"
TIMINGS = {"train_wall_s", "generate_wall_s", "wall_s", "date", "step_time_s", "history"}


def without_timings(obj):
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if k not in TIMINGS}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def grid(tmp_path_factory, fixed_source):
    return ci_grid(tmp_path_factory, "ch07", exp.main, "--quiet")


def test_every_run_of_the_plan_writes_its_own_record(grid):
    settings = exp.PRESETS["ci"]
    specs = exp.plan(settings)
    files = sorted(p.stem for p in grid.glob("*.json"))
    assert files == sorted([s["id"] for s in specs] + ["template"])
    for spec in specs:
        record = json.loads((grid / f"{spec['id']}.json").read_text())
        r = record["results"]
        assert record["preset"] == "ci" and record["source_sha256"] and record["data"]
        assert record["config"]["run"] == spec and record["wall_s"] > 0
        assert {k: r[k] for k in ("method", "size", "lr", "seed")} == {
            k: spec[k] for k in ("method", "size", "lr", "seed")
        }
        assert set(r["metrics"]) == {"bleu", "rouge_l", "nist", "ser"}
        assert set(r["bootstrap"]) == {"bleu", "rouge_l", "ser"}
        for key, ci in r["bootstrap"].items():
            assert ci["lo"] <= ci["estimate"] <= ci["hi"] and ci["n"] == settings["bootstrap"]
            assert ci["estimate"] == pytest.approx(r["metrics"][key])
        assert len(r["hyps"]) == r["data"]["test_mrs"] == settings["test_mrs"]
        assert r["steps"] == settings["steps"] and len(r["evals"]) == settings["epochs"]
        assert math.isfinite(r["dev_loss"]) and 0 <= r["name_kept"] <= 100
        assert 0 < r["trainable_params"] <= r["total_params"]
        assert r["tokens_seen"] > 0 and "peak_mem_mb" in r  # as chapter 6's records (None on a CPU)


def test_template_record_scores_the_same_test_mrs(grid):
    t = json.loads((grid / "template.json").read_text())["results"]
    test = load_e2e("test", "auto")[: exp.PRESETS["ci"]["test_mrs"]]
    hyps = template_texts([r.mr for r in test])
    assert t["hyps"] == hyps and t["metrics"]["ser"] == 0.0
    assert t["metrics"] == score_all(hyps, [list(r.refs) for r in test], mrs=[r.mr for r in test])


def test_report_builds_table3_figure2_and_claims_from_the_records(grid):
    out = rep.report_folder(grid, exp.PRESETS["ci"])
    t3, settings = out["table3"], exp.PRESETS["ci"]
    assert list(t3) == list(exp.TABLE3) and set(exp.TABLE3) == set(METHODS)
    assert not out["missing"] and not out["stale"] and out["gpu_minutes"] > 0
    for m, row in t3.items():
        assert row["status"] == "run" and row["seeds"] == list(settings["seeds"])
        assert row["lr"] == settings["lrs"][m][0]
        bleu = row["metrics"]["bleu"]
        assert bleu["n"] == 2 and bleu["sd"] is not None and bleu["ci_half_width"] >= 0
        if m in ("ft", "ft_top2", "bitfit"):
            assert row["formula"] is None
        else:
            assert row["trainable_params"] == row["formula"]
    model_cfg = out["runs"][0]["base"]["config"]
    d, L = model_cfg["n_embd"], model_cfg["n_layer"]
    assert t3["lora"]["formula"] == analysis.lora_params(2 * L, d, 4)
    n = settings["sizes"]["prefix_layer"]
    assert t3["prefix_layer"]["formula"] == analysis.prefix_layer_params(L, d, n - n // 4, n // 4)
    for m, sizes in settings["sweep"].items():
        points = out["figure2"][m]["points"]
        assert [p["size"] for p in points] == list(sizes)
        counts = [p["trainable_params"] for p in points]
        assert counts == sorted(counts)
    verdicts = {c["verdict"] for c in out["claims"]}
    assert verdicts <= {"reproduced", "not reproduced", "undetermined"}
    table = rep.table3_text(t3, out["template"]).splitlines()
    assert table[1].split()[0] == "template" and len(table) == 10 and "±" in table[-1]


def test_a_second_call_makes_nothing_and_force_makes_all(grid, capsys):
    stamp = {p.name: p.stat().st_mtime_ns for p in grid.glob("*.json")}
    exp.main(["--preset", "ci", "--out", str(grid), "--device", "cpu"])
    assert "0 of 20 runs to make" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in grid.glob("*.json")} == stamp
    exp.main(["--preset", "ci", "--out", str(grid), "--list"])
    assert capsys.readouterr().out.strip().endswith(f"0 of 20 runs to do in {grid}")


def test_missing_and_foreign_records_are_listed_not_filled_in(grid, tmp_path):
    part = tmp_path / "part"
    shutil.copytree(grid, part)
    (part / "lora-size4-lr0.001-s1.json").unlink()
    for name in ("ft-lr0.0002-s0", "ft-lr0.0002-s1"):
        (part / f"{name}.json").unlink()
    record = json.loads((part / "bitfit-lr0.002-s0.json").read_text())
    record["source_sha256"] = "other-source"
    (part / "bitfit-lr0.002-s0.json").write_text(json.dumps(record))
    out = rep.report_folder(part, exp.PRESETS["ci"])
    assert {s["id"] for s in out["missing"]} == {
        "lora-size4-lr0.001-s1",
        "ft-lr0.0002-s0",
        "ft-lr0.0002-s1",
    }
    assert out["stale"] == ["bitfit-lr0.002-s0"]
    assert out["table3"]["ft"]["status"] == "not run" and out["table3"]["lora"]["n"] == 1
    claim = next(c for c in out["claims"] if c["claim"].startswith("LoRA matches"))
    assert claim["verdict"] == "not run"
    claim = next(c for c in out["claims"] if c["claim"] == "LoRA beats AdapterL")
    assert claim["verdict"] == "undetermined" and "fewer than 2 seeds" in claim["why"]
    assert "not run" in rep.table3_text(out["table3"], out["template"]).splitlines()[2]
    todo = {s["id"] for s in exp._grid.todo(exp.plan(exp.PRESETS["ci"]), part)}
    assert todo == {s["id"] for s in out["missing"]} | {"bitfit-lr0.002-s0"}


def _row(values, hw=0.5):
    runs = [
        {"seed": i, "metrics": {"bleu": v}, "bootstrap": {"bleu": {"lo": v - hw, "hi": v + hw}}}
        for i, v in enumerate(values)
    ]
    return {
        "status": "run",
        "metrics": {"bleu": {"values": values, "cis": [r["bootstrap"]["bleu"] for r in runs]}},
    }


@pytest.mark.parametrize(
    "a, b, kind, expected",
    [
        ([70.0, 70.5, 70.2], [66.0, 66.4, 66.1], "beats", "reproduced"),
        ([66.0, 66.4, 66.1], [70.0, 70.5, 70.2], "beats", "not reproduced"),
        ([70.0, 70.5, 70.2], [70.1, 70.3, 70.0], "beats", "undetermined"),
        ([70.0, 70.5, 70.2], [70.1, 70.3, 70.0], "matches", "reproduced"),
        ([70.0], [60.0, 61.0], "beats", "undetermined"),
    ],
)
def test_claim_verdicts_follow_the_stated_rule(a, b, kind, expected):
    assert rep.claim_verdict(rep.compare(_row(a), _row(b)), kind) == expected


def test_report_helpers_format_what_the_tables_show():
    from lorakit.experiments import _report

    s = {"mean": 70.25, "sd": 0.5, "n": 3, "ci_half_width": 1.25}
    assert _report.seeds_text(s) == "70.2 ± 0.5 (3 seeds)"
    assert _report.seeds_text({**s, "sd": None, "n": 1}) == "70.2 (1 seed)"
    assert _report.seeds_text({"mean": None}) == "not run"
    assert _report.mean_cell(s, ".1f") == "70.2 ± 0.5 [±1.2]"
    assert _report.mean_cell(s, ".2f", interval=False) == "70.25 ± 0.50"
    assert _report.mean_cell({"mean": None}, ".1f") is None
    assert _report.text_table([("a", "bb"), ("ccc", "d")]) == "a    bb\nccc   d"
    template = {"metrics": {"bleu": 60.0}, "bootstrap": {"bleu": {"lo": 58.0, "hi": 61.0}}}
    assert _report.template_metrics(template, ["bleu"]) == {
        "bleu": {"mean": 60.0, "sd": None, "ci_half_width": 1.5}
    }
    row = _report.judged_row(
        7, "c", "p", "o", rep.compare(_row([3.0, 3.1]), _row([1.0, 1.1])), "beats"
    )
    assert (row["verdict"], row["why"].split(":")[0]) == ("reproduced", "a better")
    assert _report.claim_row(7, "c", "p")["verdict"] == "not run"


def test_presets_table_needs_one_value_per_preset():
    from lorakit.experiments._grid_command import by_preset, settings_for

    table = by_preset({"epochs": (1, 2, 5)}, label_smoothing=0.1)
    assert table["cpu"] == {"epochs": 2, "label_smoothing": 0.1}
    with pytest.raises(ValueError, match="'epochs' has 2 values"):
        by_preset({"epochs": (1, 5)})
    with pytest.raises(ValueError, match="Unknown settings \\['epoch'\\]"):
        settings_for(table, "ci", {"epoch": 3})
    with pytest.raises(ValueError, match="Unknown preset 'tpu'"):
        settings_for(table, "tpu")


def test_plan_of_the_gpu_preset():
    settings = exp.PRESETS["gpu"]
    specs = exp.plan(settings)
    assert len({s["id"] for s in specs}) == len(specs)
    table = [s for s in specs if s["part"] == "table3"]
    assert len(table) == 8 * 3 and {s["seed"] for s in table} == {0, 1, 2}
    assert settings["epochs"] == 5 and settings["batch_size"] == 8 and settings["warmup"] == 500
    assert settings["test_mrs"] is None and settings["beams"] == 10  # the whole test split
    for m in ("prefix_embed", "prefix_layer"):
        assert {256, 512} <= set(settings["sweep"][m])
    extra = [s for s in specs if s["part"] == "figure2"]
    reused = sum(settings["sizes"][m] in sizes for m, sizes in settings["sweep"].items())
    n_points = sum(len(sizes) for sizes in settings["sweep"].values()) - reused
    assert len(extra) == n_points * len(settings["sweep_seeds"]) + reused * len(
        set(settings["sweep_seeds"]) - set(settings["seeds"])
    )
    assert len(exp.plan(settings, "table3")) == 24


def test_lr_option_adds_rates_and_refuses_nonsense(tmp_path, capsys):
    settings = exp.settings_for("ci", {"lrs": {"lora": (1e-3, 5e-3)}})
    assert settings["lrs"]["lora"] == (1e-3, 5e-3) and settings["lrs"]["ft"] == (2e-4,)
    exp.main(["--preset", "ci", "--out", str(tmp_path), "--list", "--lr", "lora=1e-3,5e-3"])
    assert "lora-size4-lr0.005-s1" in capsys.readouterr().out
    for bad in ("lora", "nope=1e-3", "lora=-1"):
        with pytest.raises(SystemExit):
            exp.main(["--preset", "ci", "--list", "--lr", bad])


def test_jobs_2_writes_the_records_of_jobs_1(tmp_path):
    args = [
        "--preset",
        "ci",
        "--device",
        "cpu",
        "--quiet",
        "--data",
        str(FIXTURE),
        "--part",
        "table3",
        "--seeds",
        "0",
    ]
    exp.main(args + ["--out", str(tmp_path / "one")])
    exp.main(args + ["--out", str(tmp_path / "two"), "--jobs", "2"])
    for path in sorted((tmp_path / "one").glob("*.json")):
        one = json.loads(path.read_text())
        two = json.loads((tmp_path / "two" / path.name).read_text())
        assert without_timings(one["results"]) == without_timings(two["results"])
        assert one["data"] == two["data"] and one["data"]["path"] == str(FIXTURE.resolve())
    assert len(list((tmp_path / "one").glob("*.json"))) == 9


def test_prompted_generator_returns_prompt_and_new_tokens_only(tiny_tokenizer):
    model = make_tiny_gpt2()
    sep = tiny_tokenizer(" ||", add_special_tokens=False)["input_ids"]
    report = apply_method(model, "prefix_layer", **exp.method_kwargs("prefix_layer", 4, sep))
    ids = torch.tensor([tiny_tokenizer("name[A] ||")["input_ids"]])
    mask = torch.ones_like(ids)
    out = exp.PromptedGenerator(model, report.prepare_batch).generate(
        ids, mask, max_new_tokens=5, do_sample=False, pad_token_id=0, min_new_tokens=5
    )
    assert torch.equal(out[:, : ids.shape[1]], ids) and out.shape[1] == ids.shape[1] + 5
    assert int(out.max()) < model.config.vocab_size  # no special id leaks into the text


def test_unknown_preset_settings_and_a_base_too_short_for_the_prefixes(tiny_tokenizer):
    info = BaseInfo(source="test", name="tiny", n_params=0, tokenizer="tiny", vocab_size=300)
    with pytest.raises(ValueError, match="Unknown preset"):
        exp.run_baselines("huge", progress=False)
    with pytest.raises(ValueError, match="Unknown settings"):
        exp.run_baselines("ci", progress=False, overrides={"stepz": 3})
    short = make_tiny_gpt2(n_positions=16)
    with pytest.raises(ValueError, match="no room for"):
        exp.run_baselines("ci", loaded=(short, tiny_tokenizer, info), device="cpu", progress=False)


def test_progress_lines_name_the_shipped_data_without_this_machines_path():
    from lorakit.data.sources import data_source
    from lorakit.experiments._baselines_run import data_label

    shipped = data_source("synthetic")
    label = data_label(shipped)
    assert "data/e2e" in label and str(shipped.root.resolve()) not in label
    assert "tests/fixtures/e2e_real" in data_label(data_source(FIXTURE))  # the user's folder


def test_no_repeat_ngram_bans_what_generate_bans_and_skips_special_ids():
    from transformers.generation.logits_process import NoRepeatNGramLogitsProcessor

    g = torch.Generator().manual_seed(0)
    V, n = 7, 3
    ids = torch.randint(0, V, (6, 25), generator=g)  # small vocabulary: many repeats
    scores = torch.randn(6, V, generator=g)
    ours = exp.RealTokenNoRepeatNGram(n, V)(ids, scores.clone())
    theirs = NoRepeatNGramLogitsProcessor(n)(ids, scores.clone())
    assert torch.equal(ours.isinf(), theirs.isinf()) and ours.isinf().any()

    # special ids (>= V) in the prompt: n-grams holding them are never banned, and nothing fails
    special = ids.clone()
    special[:, 3] = V + 2  # a special token in every row
    tail = special[:, -(n - 1) :]
    special[:, 1:3] = tail  # its n-gram [tail, V+2] would ban id V+2, past the scores
    out = exp.RealTokenNoRepeatNGram(n, V)(special, scores.clone())
    assert out.shape == scores.shape
    short = exp.RealTokenNoRepeatNGram(n, V)(ids[:, :2], scores.clone())
    assert torch.equal(short, scores)  # fewer tokens than n: nothing to ban


def test_prompted_generator_decodes_with_the_no_repeat_rule(tiny_tokenizer):
    model = make_tiny_gpt2()
    sep = tiny_tokenizer(" ||", add_special_tokens=False)["input_ids"]
    report = apply_method(model, "prefix_embed", **exp.method_kwargs("prefix_embed", 8, sep))
    ids = torch.tensor([tiny_tokenizer("name[A] ||")["input_ids"]] * 2)
    gen = exp.PromptedGenerator(model, report.prepare_batch)
    kw = dict(max_new_tokens=12, min_new_tokens=12, pad_token_id=0, num_beams=3)
    out = gen.generate(ids, torch.ones_like(ids), no_repeat_ngram_size=2, **kw)
    text = out[0, ids.shape[1] :].tolist()
    pairs = list(zip(text, text[1:]))
    assert len(pairs) == len(set(pairs))  # no bigram of the generated text repeats


def test_sweep_claims_need_the_largest_size_and_pick_the_best_smaller_by_dev_loss():
    def point(size, dev, status="run"):
        return {"size": size, "status": status, "dev_loss": dev}

    pts = [point(16, 1.3), point(64, 1.1), point(128, 1.2), point(512, 1.4)]
    best, largest, why = rep._sweep_ends(pts)
    assert (best["size"], largest["size"], why) == (64, 512, "")  # not by test BLEU
    missing = [*pts[:-1], {"size": 512, "status": "not run"}]
    assert rep._sweep_ends(missing)[2] == "the largest size of the sweep, 512, is not run"
    assert rep._sweep_ends([point(512, 1.0)])[2] == "no smaller size is run"


# Table 3's FT and LoRA runs at chapter 6's settings are chapter 6's runs: imported, not made again
ALIGNED = dict(  # chapter 7's ci preset set to chapter 6's ci settings
    train_mrs=12,
    refs_per_mr=1,
    dev_mrs=4,
    test_mrs=4,
    steps=None,
    gen_batch=4,
    max_new_tokens=16,
    seeds=(0,),
    lrs={"ft": (5e-5,), "lora": (2e-4,)},
)


@pytest.fixture(scope="module")
def twins(tmp_path_factory, fixed_source):
    """Chapter 6's grid (LoRA and full fine-tuning, seed 0) and chapter 7's Table 3 beside it,
    once importing what chapter 6 made and once making every run (``force``)."""
    from conftest import make_tiny_tokenizer, one_thread

    from lorakit.experiments import _finetune_grid as ch6

    root = tmp_path_factory.mktemp("twins")
    info = BaseInfo(source="test", name="tiny", n_params=0, tokenizer="tiny", vocab_size=300)
    base = (make_tiny_gpt2(n_positions=512), make_tiny_tokenizer(), info)
    kw = dict(preset="ci", device="cpu", progress=False, loaded=base, source=str(FIXTURE))
    with one_thread():
        runs = ch6.plan_grid(["lora", "full"], [0], {"lora": [2e-4], "full": [5e-5]})
        ch6.run_grid(
            runs, "ci", source=str(FIXTURE), out=root, device="cpu", progress=False, loaded=base
        )
        kw.update(part="table3", overrides=ALIGNED)
        exp.run_baselines(out=root / "ch07", **kw)
        exp.run_baselines(out=root / "made", force=True, **kw)
    return root


def test_chapter_7_imports_chapter_6_twins_and_they_equal_the_runs_it_would_make(twins):
    from lorakit.experiments import _grid

    ch6 = next(twins.glob("ch06_finetune_ci*"))
    current = {r["name"]: r for r in _grid.load_runs(twins / "ch07")}
    for name, twin in (("ft-lr5e-05-s0", "full-lr5e-05-s0"), ("lora-size4-lr0.0002-s0", None)):
        twin = twin or "lora-lr0.0002-s0"
        imported = json.loads((twins / "ch07" / f"{name}.json").read_text())
        made = json.loads((twins / "made" / f"{name}.json").read_text())
        source = json.loads((ch6 / f"{twin}.json").read_text())
        assert imported["results"]["imported_from"] == f"{ch6.name}/{twin}.json"
        assert "imported_from" not in made["results"]
        assert current[name]["current"], "an imported record of current runs is current"
        # the twin made the measurements: its provenance, and every module it loaded
        for key in ("device", "versions", "commit", "date", "wall_s", "data"):
            assert imported[key] == source[key], key
        assert source["source_files"].items() <= imported["source_files"].items()
        # chapter 7 making the run itself gives the same record, timings aside (on the CPU;
        # on the GPU the shipped FT records show the same)
        a, b = imported["results"], made["results"]
        skip = {"imported_from", "cuda_graphs"}
        assert without_timings({k: v for k, v in a.items() if k not in skip}) == without_timings(
            {k: v for k, v in b.items() if k not in skip}
        )
        assert [r["loss"] for r in a["history"]] == [r["loss"] for r in b["history"]]
    # the other methods were made
    trained = [json.loads(p.read_text())["results"] for p in (twins / "ch07").glob("*-s0.json")]
    assert sum("imported_from" not in r for r in trained) == len(exp.TABLE3) - 2
    # the report says which rows are chapter 6's runs and leaves their minutes to chapter 6
    settings = exp.settings_for("ci", ALIGNED)
    out, made = (
        rep.report_folder(twins / "ch07", settings),
        rep.report_folder(twins / "made", settings),
    )
    assert sorted(out["imported"]) == ["ft-lr5e-05-s0", "lora-size4-lr0.0002-s0"]
    assert not made["imported"] and out["table3"]["lora"]["status"] == "run"
    walls = sum(r["wall_s"] for r in out["records"] if r["name"] in out["imported"])
    assert out["gpu_minutes"] == pytest.approx(
        sum(r["wall_s"] for r in out["records"]) / 60 - walls / 60
    )


def test_a_twin_is_a_run_of_the_same_settings_only():
    from lorakit.experiments import _baselines_twins as tw

    gpu = exp.settings_for("gpu")
    shipped = json.loads(
        (Path(__file__).parents[1] / "data/runs/ch06_finetune_gpu/lora-lr0.001-s0.json").read_text()
    )["results"]["settings"]
    lora = {"id": "lora-size4-lr0.001-s0", "method": "lora", "size": 4, "lr": 1e-3, "seed": 0}
    assert tw.twin_id(lora) == "lora-lr0.001-s0"
    assert tw.same_settings(lora, gpu, shipped) == []
    assert tw.same_settings({**lora, "size": 16}, gpu, shipped) == ["lora"]
    assert tw.same_settings(lora, exp.settings_for("gpu", {"epochs": 2}), shipped) == ["epochs"]
    assert tw.same_settings(lora, exp.settings_for("gpu", {"steps": 100}), shipped) == ["steps"]
    assert tw.twin_id({"method": "ft", "lr": 5e-5, "seed": 2}) == "full-lr5e-05-s2"
    assert tw.twin_id({"method": "adapter_h", "lr": 5e-4, "seed": 0}) is None


def test_the_shipped_chapter_6_ft_run_imports_as_the_chapter_7_run_made_on_the_gpu():
    """Chapter 7's FT run of seed 0 was made on the GPU by chapter 7's own code; importing
    chapter 6's run of that seed and rate gives the same record, timings aside."""
    import types

    from lorakit.experiments import _baselines_twins as tw

    runs = Path(__file__).parents[1] / "data" / "runs"
    twin = json.loads((runs / "ch06_finetune_gpu" / "full-lr5e-05-s0.json").read_text())
    made = json.loads((runs / "ch07_baselines_gpu" / "ft-lr5e-05-s0.json").read_text())["results"]
    spec = {"id": "ft-lr5e-05-s0", "part": "table3", "method": "ft", "size": None}
    spec.update(lr=5e-5, seed=0)
    counts = {k: made[k] for k in ("config", "formula", "formula_text")}
    report = types.SimpleNamespace(
        trainable=made["trainable_params"], total=made["total_params"], **counts
    )
    test = load_e2e("test", "synthetic")
    rel = "ch06_finetune_gpu/full-lr5e-05-s0.json"
    got = tw.twin_results(spec, twin, rel, report, exp.settings_for("gpu"), test)
    skip = TIMINGS | {"cuda_graphs", "imported_from", "decode_batch"}  # the last: newer records
    assert {k: v for k, v in got.items() if k not in skip} == {
        k: v for k, v in made.items() if k not in skip
    }
    assert [r["loss"] for r in got["history"]] == [r["loss"] for r in made["history"]]
    # a twin whose texts do not give its own metrics is not this run
    bad = json.loads(json.dumps(twin))
    bad["results"]["methods"]["full"]["metrics"]["bleu"] += 0.01
    with pytest.raises(ValueError, match="is not this run"):
        tw.twin_results(spec, bad, rel, report, exp.settings_for("gpu"), test)


def test_prefix_runs_decode_fewer_mrs_at_once_as_their_sequences_grow():
    from lorakit.experiments._baselines_run import decode_batch

    assert decode_batch(100, "lora", 4) == decode_batch(100, "ft", None) == 100
    assert decode_batch(100, "adapter_h", 256) == 100  # a bottleneck adds no tokens
    sizes = (16, 64, 128, 256, 512)
    got = [decode_batch(100, "prefix_embed", n) for n in sizes]
    assert got == [88, 66, 50, 33, 20] == [decode_batch(100, "prefix_layer", n) for n in sizes]
    # MRs x tokens stays within the plain run's
    assert all(b * (128 + n) <= 100 * 128 for b, n in zip(got, sizes))
    assert decode_batch(1, "prefix_embed", 512) == 1


def test_records_say_how_many_mrs_they_decoded_at_once(grid):
    for path in grid.glob("*-s0.json"):
        r = json.loads(path.read_text())["results"]
        want = exp.PRESETS["ci"]["gen_batch"]
        if r["method"].startswith("prefix"):
            want = want * 128 // (128 + r["size"])
        assert r["decode_batch"] == want, path.name
