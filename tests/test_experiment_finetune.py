"""Chapter 6's experiment: the grid (one record per run, resumable), its report and verdict,
and the paper's setting (``--base gpt2-medium --data real``) offline."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from lorakit.data.sources import RealDataUnavailable
from lorakit.experiments import _finetune_grid as grid
from lorakit.experiments import finetune, finetune_report
from lorakit.fileio import file_sha256
from lorakit.models import BaseInfo, weights_sha256

pytestmark = pytest.mark.usefixtures("one_torch_thread", "fixed_source")
FIXTURE = Path(__file__).parent / "fixtures" / "e2e_real"
FILES = ("trainset.csv", "devset.csv", "testset_w_refs.csv")


@pytest.fixture
def tiny_base(tiny_tokenizer):
    from conftest import make_tiny_gpt2

    info = BaseInfo(source="test", name="tiny", n_params=0, tokenizer="tiny", vocab_size=300)
    return make_tiny_gpt2(n_positions=512), tiny_tokenizer, info


@pytest.fixture
def run_tiny(tmp_path, tiny_base):
    """``grid.run_grid(runs, "ci", ...)`` on the real-format fixture with the tiny base, on the
    CPU, quietly, its records under ``tmp_path`` (unless ``out`` is given)."""

    def run(runs, **kwargs):
        kwargs = {"out": tmp_path, **kwargs}
        return grid.run_grid(
            runs,
            "ci",
            source=str(FIXTURE),
            device="cpu",
            progress=False,
            loaded=tiny_base,
            **kwargs,
        )

    return run


def test_plan_is_seed_major_and_names_each_run():
    runs = grid.plan_grid(["lora", "full"], [0, 1], {"lora": [2e-4, 1e-3], "full": [5e-5]})
    assert [r.name for r in runs] == [
        "lora-lr0.0002-s0",
        "lora-lr0.001-s0",
        "full-lr5e-05-s0",
        "lora-lr0.0002-s1",
        "lora-lr0.001-s1",
        "full-lr5e-05-s1",
    ]
    with pytest.raises(ValueError, match="Unknown methods"):
        grid.plan_grid(["adapter"], [0], {"adapter": [1e-3]})
    assert grid.grid_folder("r", "gpu", "offline", "synthetic").name == "ch06_finetune_gpu"
    assert (
        grid.grid_folder("r", "gpu", "gpt2-medium", "real", "x").name
        == "ch06_finetune_gpu_gpt2-medium_real_x"
    )


def test_grid_writes_one_record_per_run_and_resumes(run_tiny, tmp_path, tiny_base, capsys):
    runs = grid.plan_grid(["lora", "full"], [0, 1], {"lora": [2e-4], "full": [5e-5]})
    out = run_tiny(runs)
    assert out.folder == tmp_path / "ch06_finetune_ci_tiny_dir"
    assert sorted(p.name for p in out.written) == sorted(f"{r.name}.json" for r in runs)
    rec = json.loads((out.folder / "lora-lr0.0002-s1.json").read_text())
    run = rec["results"]["methods"]["lora"]
    assert (rec["seed"], run["seed"], run["lr"], rec["config"]["method"]) == (1, 1, 2e-4, "lora")
    assert len(run["hyps"]) == rec["results"]["data"]["test_mrs"] == 2  # every text is kept
    assert set(run["bootstrap"]) == {"bleu", "rouge_l", "ser"}
    assert (
        run["bootstrap"]["bleu"]["lo"] <= run["metrics"]["bleu"] <= run["bootstrap"]["bleu"]["hi"]
    )
    assert "bootstrap" in rec["results"]["template"] and run["dev_loss"] is not None
    assert rec["data"]["files"] == {n: file_sha256(FIXTURE / n) for n in FILES}
    seed0 = json.loads((out.folder / "lora-lr0.0002-s0.json").read_text())
    assert seed0["results"]["methods"]["lora"]["history"] != run["history"]  # seeds differ

    again = run_tiny(runs)
    assert again.written == [] and sorted(again.current) == sorted(r.name for r in runs)
    forced = run_tiny(runs[:1], force=True)
    assert [p.name for p in forced.written] == ["lora-lr0.0002-s0.json"]

    rec["source_sha256"] = "0" * 64  # as if made by other code: made again
    (out.folder / "lora-lr0.0002-s1.json").write_text(json.dumps(rec))
    assert (
        grid.stale_reason(out.folder / "lora-lr0.0002-s1.json", "x", {}, {})
        == "made from another lorakit/ source"
    )
    redo = run_tiny(runs)
    assert [p.name for p in redo.written] == ["lora-lr0.0002-s1.json"]

    rec = json.loads((out.folder / "lora-lr0.0002-s1.json").read_text())
    assert rec["results"]["base"]["weights_sha256"] == weights_sha256(tiny_base[0])
    base_here, path = dict(rec["results"]["base"]), out.folder / "lora-lr0.0002-s1.json"
    assert grid.stale_reason(path, "x", rec["data"], base_here) is None
    rec["results"]["base"]["weights_sha256"] = "0" * 64  # as if made from another build
    path.write_text(json.dumps(rec))
    assert "another build of the base" in grid.stale_reason(path, "x", rec["data"], base_here)
    assert "base builds: 2 different" in finetune_report.report(out.folder)
    assert [p.name for p in run_tiny(runs).written] == ["lora-lr0.0002-s1.json"]
    assert "base build: one for every run" in finetune_report.report(out.folder)

    text = finetune_report.report(out.folder, [0, 1, 2], {"lora": [2e-4], "full": [5e-5]})
    assert "template" in text and "lora lr 0.0002" in text and "seed 1" in text
    assert "not run (2): lora lr 0.0002 seed 2, full lr 5e-05 seed 2" in text
    assert 'claim "LoRA matches full fine-tuning' in text


def test_budget_starts_no_run_that_would_overrun(run_tiny, monkeypatch):
    real_run = grid._grid_run

    def slow_run(*args):  # as if each run took 100 s
        return {**real_run(*args), "wall_s": 100.0}

    monkeypatch.setattr(grid, "_grid_run", slow_run)
    runs = grid.plan_grid(["lora"], [0, 1, 2], {"lora": [2e-4]})
    out = run_tiny(runs, budget_s=50)
    assert len(out.written) == 1 and out.not_started == [r.name for r in runs[1:]]


def test_grid_with_two_jobs_gives_the_records_of_one(run_tiny, tmp_path):
    runs = grid.plan_grid(["lora"], [0, 1], {"lora": [2e-4]})
    one = run_tiny(runs, out=tmp_path / "one")
    two = run_tiny(runs, out=tmp_path / "two", jobs=2)
    for name in ("lora-lr0.0002-s0.json", "lora-lr0.0002-s1.json"):
        a, b = (
            json.loads((o.folder / name).read_text())["results"]["methods"]["lora"]
            for o in (one, two)
        )
        assert a["hyps"] == b["hyps"] and a["metrics"] == b["metrics"]


def test_command_line_reads_the_data_asked_for(tmp_path, monkeypatch, tiny_base):
    monkeypatch.setattr("lorakit.models.load_base", lambda *a, **k: tiny_base)
    options = "--preset ci --device cpu --no-progress --methods lora --seeds 0".split()
    finetune.main([*options, "--data", str(FIXTURE), "--out", str(tmp_path)])
    record = json.loads(
        (tmp_path / "ch06_finetune_ci_tiny_dir" / "lora-lr0.0002-s0.json").read_text()
    )
    res = record["results"]
    assert res["data"]["source"] == "dir" and res["data"]["train_mrs"] == 3
    assert res["data"]["train_pairs"] == 3  # the ci preset keeps 1 reference per MR
    assert res["methods"]["lora"]["samples"][0]["mr"].startswith("name[Marigold Row]")
    assert record["config"]["data"] == str(FIXTURE)


def test_real_data_offline_and_not_cached_stops_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RealDataUnavailable, match="e2e-dataset"):
        finetune.main(["--preset", "ci", "--data", "real", "--out", str(tmp_path)])
    assert not list(tmp_path.rglob("*.json"))


def _medium_stand_in(tiny_tokenizer, full_size: bool):
    """What ``load_hub("gpt2-medium")`` returns offline: random weights, GPT-2 medium's
    architecture (24 layers x 1024, 16 heads) when ``full_size``, else a 2-layer cut of it."""
    from lorakit.models.gpt2 import build_gpt2

    arch = dict(
        n_layer=24 if full_size else 2,
        n_embd=1024 if full_size else 64,
        n_head=16 if full_size else 4,
    )
    model = build_gpt2(n_positions=1024, vocab_size=len(tiny_tokenizer), seed=0, **arch).eval()
    info = BaseInfo(
        source="hub",
        name="gpt2-medium",
        n_params=sum(p.numel() for p in model.parameters()),
        tokenizer="tiny",
        vocab_size=len(tiny_tokenizer),
        config=arch,
    )
    return model, tiny_tokenizer, info


@pytest.mark.parametrize(
    "full_size",
    [
        False,
        pytest.param(
            True,
            marks=pytest.mark.skipif(
                not os.environ.get("LORAKIT_TEST_MEDIUM"),
                reason="GPT-2 medium's size on a CPU takes minutes: set LORAKIT_TEST_MEDIUM=1",
            ),
        ),
    ],
)
def test_paper_setting_command_runs_offline(tmp_path, monkeypatch, tiny_tokenizer, full_size):
    """``--base gpt2-medium --data real``: the real data from the cache (the real-format
    fixture placed there) and a randomly initialised GPT-2 medium standing in for the hub's."""
    from lorakit.data.sources import real_entry
    from lorakit.models.cache import write_entry

    monkeypatch.setenv("LORAKIT_CACHE", str(tmp_path / "cache"))
    write_entry(
        real_entry(),
        lambda tmp: [shutil.copy(FIXTURE / n, tmp / n) for n in FILES],
        {"note": "test fixture"},
    )
    asked = []

    def load_hub(name):
        asked.append(name)
        return _medium_stand_in(tiny_tokenizer, full_size)

    monkeypatch.setattr("lorakit.models.loading.load_hub", load_hub)
    options = "--preset ci --base gpt2-medium --data real --device cpu --no-progress --seeds 0"
    out = finetune.main([*options.split(), "--out", str(tmp_path / "runs")])
    assert asked == ["gpt2-medium"]
    assert out.folder.name == "ch06_finetune_ci_gpt2-medium_real"
    rec = json.loads((out.folder / "lora-lr0.0002-s0.json").read_text())
    assert rec["results"]["base"]["name"] == "gpt2-medium" and rec["data"]["source"] == "real"
    lora = rec["results"]["methods"]["lora"]
    settings = rec["results"]["settings"]
    assert settings["lora"] == {"r": 4, "alpha": 32, "targets": ["q", "v"], "dropout": 0.1}
    assert settings["label_smoothing"] == 0.1 and settings["decoding"]["num_beams"] == 10
    n_layer = rec["results"]["base"]["config"]["n_layer"]
    width = rec["results"]["base"]["config"]["n_embd"]
    assert lora["trainable_params"] == 2 * n_layer * 2 * width * 4  # 2·L·d·r per q and v
    if full_size:
        assert lora["trainable_params"] == 393_216  # the paper's count for GPT-2 medium


def test_gpu_preset_is_the_papers_schedule():
    from lorakit.presets import PAPER_E2E

    gpu = finetune.PRESETS["gpu"]
    assert (gpu["epochs"], gpu["batch_size"], gpu["warmup"], gpu["beams"]) == (5, 8, 500, 10)
    assert gpu["train_mrs"] is None and gpu["test_mrs"] is None and gpu["refs_per_mr"] is None
    assert gpu["lr"] == PAPER_E2E["lr"] == {"lora": 2e-4, "full": 5e-5}
    assert finetune.GRID["lr"]["lora"][0] == 2e-4 and finetune.GRID["seeds"] == (0, 1, 2)


def test_report_of_a_folder_lists_what_its_own_preset_did_not_run(tmp_path, monkeypatch, capsys):
    # a folder of gpu records reported under another environment preset: the plan is the gpu grid's
    monkeypatch.setenv("LORAKIT_PRESET", "cpu")
    for name, preset in (("a.json", "gpu"), ("b.json", "gpu")):
        (tmp_path / name).write_text(json.dumps({"preset": preset}))
    assert finetune_report.records_preset(tmp_path) == "gpu"
    (tmp_path / "c.json").write_text(json.dumps({"preset": "cpu"}))
    assert finetune_report.records_preset(tmp_path) is None  # mixed: no guess
    assert finetune_report.records_preset(tmp_path / "missing") is None

    from lorakit.runs import RUNS_DIR

    folder = RUNS_DIR / "ch06_finetune_gpu"
    if not any(folder.glob("*.json")):
        pytest.skip("no recorded gpu grid")
    finetune_report.main(["--dir", str(folder)])
    planned = {(m, lr) for m, lrs in finetune.GRID["lr"].items() for lr in lrs}
    out = capsys.readouterr().out
    not_run = out.split("not run (", 1)[1].split("\n", 1)[0] if "not run (" in out else ""
    assert all(f"{m} lr {lr:g}" in out for m, lr in planned)  # each rate of the gpu grid shows
    assert "lr 0.005" not in not_run and "lr 0.0003" not in not_run  # not the ci preset's rates
