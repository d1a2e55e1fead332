"""python -m lorakit.bench e2e-step: a small run on the CPU writes a record with rows and ratios."""

from __future__ import annotations

import json
import math

import pytest

from lorakit.bench import e2e_step


def test_e2e_step_small_run_writes_rows_and_ratios(tmp_path, capsys):
    out = tmp_path / "e2e.json"
    e2e_step.main(
        [
            "--small",
            "--device",
            "cpu",
            "--steps",
            "6",
            "--out",
            str(out),
            "--rows",
            "lorakit_default",
            "lorakit_eager",
            "full_default",
        ]
    )
    record = json.loads(out.read_text())
    rows = record["results"]["rows"]
    assert set(rows) == {"lorakit_default", "lorakit_eager", "full_default"}
    for row in rows.values():
        assert row["steps"] == 6 and row["step_ms"] > 0 and row["cuda_graphs"] is None  # a CPU
    assert rows["lorakit_default"]["trainable_params"] < rows["full_default"]["trainable_params"]
    ratio = record["results"]["ratios"]["default_vs_full_default"]
    assert ratio["value"] == rows["lorakit_default"]["step_ms"] / rows["full_default"]["step_ms"]
    assert record["source_sha256"] and record["device"]
    assert "ms/step" in capsys.readouterr().out


def test_e2e_step_deterministic_rows_time_the_cost_and_check_repeats(tmp_path):
    out = tmp_path / "e2e.json"
    rows = ["lorakit_default", "lorakit_deterministic"]
    argv = ["--small", "--device", "cpu", "--steps", "4", "--rounds", "2", "--out", str(out)]
    e2e_step.main([*argv, "--rows", *rows])
    results = json.loads(out.read_text())["results"]
    det = results["rows"]["lorakit_deterministic"]
    assert len(det["final_loss_rounds"]) == 2 and det["repeats"] is True  # same weights, batches
    assert results["rows"]["lorakit_default"]["repeats"] is True  # a CPU repeats anyway
    ratio = results["ratios"]["deterministic_vs_default"]
    assert ratio["rounds"] == [
        a / b
        for a, b in zip(det["step_ms_rounds"], results["rows"]["lorakit_default"]["step_ms_rounds"])
    ]


def test_e2e_examples_are_shaped_like_the_task():
    examples = e2e_step.e2e_examples(200, vocab=100)
    assert all(40 <= len(e.input_ids) <= 100 and 18 <= e.n_prompt <= 32 for e in examples)
    assert e2e_step.e2e_examples(5, 100) == e2e_step.e2e_examples(5, 100)  # seeded


@pytest.mark.parametrize(
    "argv,match", [(["--steps", "0"], "--steps"), (["--device", "nosuch"], "--device")]
)
def test_e2e_step_refuses_bad_arguments_before_any_work(argv, match, capsys):
    with pytest.raises(SystemExit) as exit_:
        e2e_step.main(argv)
    assert exit_.value.code == 2 and match in capsys.readouterr().err


def test_finetune_refuses_a_negative_learning_rate(capsys):
    from lorakit.experiments import finetune

    with pytest.raises(SystemExit):
        finetune.main(["--lora-lr", "-1"])
    assert "--lora-lr" in capsys.readouterr().err


def test_e2e_step_times_the_eager_goal_in_paired_blocks(tmp_path, capsys):
    out = tmp_path / "e2e.json"
    argv = ["--small", "--device", "cpu", "--steps", "4", "--out", str(out)]
    e2e_step.main([*argv, "--rows", "lorakit_eager", "peft_eager", "--pairs", "3"])
    results = json.loads(out.read_text())["results"]
    paired = results["paired_blocks"]
    assert paired["rows"] == ["lorakit_eager", "peft_eager"] and len(paired["pairs"]) == 3
    assert [p["first"] for p in paired["pairs"]] == ["lorakit_eager", "peft_eager", "lorakit_eager"]
    for p in paired["pairs"]:
        assert p["lorakit_eager_ms"] > 0 and p["peft_eager_ms"] > 0
        assert p["ratio"] == p["lorakit_eager_ms"] / p["peft_eager_ms"]
    goal = results["ratios"]["eager_vs_peft_eager"]
    r = [p["ratio"] for p in paired["pairs"]]
    assert paired["couples"] == [pytest.approx(math.sqrt(r[0] * r[1]))]
    assert goal["value"] == paired["median_ratio"] == paired["couples"][0]
    assert paired["pairs_median"] == sorted(r)[1]
    assert goal["estimate"] == "median over the AB/BA couples"
    assert goal["rounds_value"] == (
        results["rows"]["lorakit_eager"]["step_ms"] / results["rows"]["peft_eager"]["step_ms"]
    )
    assert goal["met"] == (goal["value"] <= 1.0)
    assert "pair 3:" in capsys.readouterr().out


def test_couples_cancel_a_position_effect_that_pairs_alone_do_not():
    # lorakit truly 0.97x PEFT; whichever block runs second takes 0.9x its time
    true, second = 0.97, 0.9
    pairs = []
    for k in range(6):
        lk, pf = (1.0, 1 / true * second) if k % 2 == 0 else (second, 1 / true)
        pairs.append({"ratio": lk / pf})
    pairs[5]["ratio"] *= 1.2  # one noisy block: the couples' median shrugs it off
    summary = e2e_step.summarize_pairs(pairs)
    assert summary["couples"][:2] == [pytest.approx(true)] * 2
    assert summary["median_ratio"] == pytest.approx(true)
    assert summary["position_effect"] == pytest.approx(1 / second, rel=0.05)
    assert summary["pairs_median"] > 1.0  # the pairs' median calls a faster row slower
    single = e2e_step.summarize_pairs([{"ratio": 1.1}])
    assert single["median_ratio"] == 1.1 and single["couples"] == []
    assert single["estimate"] == "median over the pairs" and single["position_effect"] is None


def test_e2e_step_without_pairs_keeps_the_rounds_estimate(tmp_path):
    out = tmp_path / "e2e.json"
    argv = ["--small", "--device", "cpu", "--steps", "4", "--out", str(out), "--pairs", "0"]
    e2e_step.main([*argv, "--rows", "lorakit_eager", "peft_eager"])
    results = json.loads(out.read_text())["results"]
    assert results["paired_blocks"] is None
    assert "rounds_value" not in results["ratios"]["eager_vs_peft_eager"]


def test_e2e_step_refuses_negative_pairs(capsys):
    with pytest.raises(SystemExit) as exit_:
        e2e_step.main(["--small", "--pairs", "-1"])
    assert exit_.value.code == 2 and "--pairs" in capsys.readouterr().err
