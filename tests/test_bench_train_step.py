"""python -m lorakit.bench train-step: the variants, the report's ratios, a small CPU run."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from lorakit.bench._train_step_report import COMPARISONS, comparisons, ratios
from lorakit.bench.train_step import METHODS, VARIANTS, build_variant, main, prepare
from lorakit.models.gpt2 import build_gpt2

TINY = {"n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 16, "vocab_size": 32}


def test_train_step_small_cpu_writes_a_record(tmp_path, capsys):
    out = tmp_path / "train_step.json"
    main(["--small", "--device", "cpu", "--warmup", "0", "--steps", "2", "--out", str(out)])
    record = json.loads(out.read_text())
    res = record["results"]
    # no CUDA: graphs are skipped with a note and the goals are judged on the eager steps
    assert list(res["modes"]) == ["eager"] and res["goal_mode"] == "eager"
    assert any("graph mode skipped" in note for note in res["notes"])
    m = res["modes"]["eager"]["methods"]
    for method in ("full", "lorakit_qv", "lorakit_qkv", "floor"):
        r = m[method]
        assert r["step_ms"] > 0 and r["peak_mem_mb"] is None and r["mode"] == "eager"
        assert r["forward_ms"] > 0 and r["backward_ms"] > 0
    # the floor trains only the position embedding (backward runs through every layer)
    assert m["floor"]["trainable_params"] == 128 * 64  # n_positions x width
    assert m["lorakit_qv"]["branch_ms"] == pytest.approx(
        m["lorakit_qv"]["step_ms"] - m["floor"]["step_ms"]
    )
    assert m["full"]["branch_ms"] is None and m["floor"]["branch_ms"] is None
    assert m["full"]["trainable_params"] == m["full"]["total_params"]
    # q,v and q,k,v LoRA: 2 and 3 slices of r x (k + d) per layer; tiny config: 2 layers, width 64
    assert m["lorakit_qv"]["trainable_params"] == 2 * 2 * 4 * (64 + 64)
    assert m["lorakit_qkv"]["trainable_params"] == 2 * 3 * 4 * (64 + 64)
    assert res["ratios"]["step_lorakit_qv_vs_full"] == pytest.approx(
        m["lorakit_qv"]["step_ms"] / m["full"]["step_ms"]
    )
    # frozen-bf16 variants: the same trainable parameters, frozen weights in bf16
    for method in ("lorakit_qv", "lorakit_qkv"):
        frozen = m[method + "_frozen_bf16"]
        assert frozen["frozen_bf16"] and frozen["trainable_params"] == m[method]["trainable_params"]
    # interleaved rounds (tiny preset: 2), the median of them reported
    for r in m.values():
        assert len(r["step_ms_rounds"]) == 2 and r["step_ms_min"] <= r["step_ms"]
    assert res["ratios"] == res["modes"]["eager"]["ratios"]
    rows = {row["key"]: row for row in res["modes"]["eager"]["comparisons"]}
    step_goal = rows["step_lorakit_qv_vs_full"]
    assert (
        step_goal["met"] == (step_goal["ratio"] <= 0.75)
        and "full fine-tuning" in step_goal["label"]
    )
    assert rows["mem_lorakit_qv_vs_full"]["ratio"] is None  # no CUDA memory on CPU
    printed = capsys.readouterr().out
    assert "goal <= 0.75: " + ("met" if step_goal["met"] else "NOT met") in printed
    assert "goal <= 0.6: not measured" in printed
    if importlib.util.find_spec("peft") is None:
        assert "peft_qkv" not in m and "not installed" in res["notes"][0]
    assert "wrote" in printed and "[eager]" in printed


def test_ratios_and_goals():
    results = {
        "full": {"step_ms": 100.0, "peak_mem_mb": 1000.0},
        "lorakit_qv": {"step_ms": 70.0, "peak_mem_mb": 500.0},
        "lorakit_qkv": {"step_ms": 72.0, "peak_mem_mb": 520.0},
        "peft_qkv": {"step_ms": 90.0, "peak_mem_mb": 800.0},
    }
    r = ratios(results)
    assert r["step_lorakit_qkv_vs_peft_qkv"] == pytest.approx(0.8)
    assert r["goals"] == {
        "lorakit_step_le_0.75_full": True,
        "lorakit_step_le_0.9_peft": True,
        "lorakit_mem_le_0.6_full": True,
    }
    del results["peft_qkv"]
    assert ratios(results)["goals"]["lorakit_step_le_0.9_peft"] is None
    results["lorakit_qv"]["step_ms"] = 80.0  # a goal not met is reported as such
    rows = {row["key"]: row for row in comparisons(results)}
    assert rows["step_lorakit_qv_vs_full"]["met"] is False
    assert rows["step_lorakit_qv_vs_full"]["ratio"] == pytest.approx(0.8)
    results.update(
        {
            "peft_qkv": {"step_ms": 90.0, "peak_mem_mb": 800.0},
            "lorakit_qkv_frozen_bf16": {"step_ms": 60.0, "peak_mem_mb": 400.0},
            "peft_qkv_frozen_bf16": {"step_ms": 80.0, "peak_mem_mb": 600.0},
        }
    )
    rows = {row["key"]: row for row in comparisons(results)}
    same = rows["step_lorakit_qkv_frozen_bf16_vs_peft_qkv_frozen_bf16"]
    assert same["ratio"] == pytest.approx(0.75) and same["met"] is None  # no goal: informational
    assert "same treatment" in same["label"]
    assert rows["step_lorakit_qkv_frozen_bf16_vs_peft_qkv"]["ratio"] == pytest.approx(60 / 90)
    assert rows["step_lorakit_qv_vs_peft_qkv"]["ratio"] == pytest.approx(80 / 90)
    assert "different targets" in rows["step_lorakit_qv_vs_peft_qkv"]["label"]
    # branch costs: (step - floor) of lorakit over that of PEFT
    results["floor"] = {"step_ms": 50.0, "peak_mem_mb": 400.0}
    rows = {row["key"]: row for row in comparisons(results)}
    branch = rows["branch_lorakit_qkv_vs_peft_qkv"]
    assert branch["ratio"] == pytest.approx((72 - 50) / (90 - 50)) and branch["baseline"] == "floor"
    assert rows["step_floor_vs_peft_qkv"]["ratio"] == pytest.approx(50 / 90)
    results["peft_qkv"]["step_ms"] = 50.0  # no branch cost to divide by: no ratio
    assert (
        comparisons(results)[
            [r["key"] for r in comparisons(results)].index("branch_lorakit_qkv_vs_peft_qkv")
        ]["ratio"]
        is None
    )


def test_frozen_bf16_method_casts_only_frozen_weights():
    model = build_variant("lorakit_qv_frozen_bf16", TINY, device=torch.device("cpu"))
    assert model.transformer.h[0].mlp.c_fc.weight.dtype == torch.bfloat16
    assert model.transformer.wte.weight.dtype == torch.float32  # tied to the LM head: kept
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)


def test_the_variants_table_names_every_method_once_and_the_comparisons_name_variants():
    assert METHODS == (
        "full",
        "lorakit_qv",
        "lorakit_qkv",
        "peft_qkv",
        "floor",
        "lorakit_qv_frozen_bf16",
        "lorakit_qkv_frozen_bf16",
        "peft_qkv_frozen_bf16",
        "floor_frozen_bf16",
    )
    assert all(v.frozen_bf16 == name.endswith("_frozen_bf16") for name, v in VARIANTS.items())
    for c in COMPARISONS:
        assert {c.numerator, c.denominator, c.baseline or "floor"} <= set(METHODS), c
    assert len({c.key for c in COMPARISONS}) == len(COMPARISONS)
    full = build_variant("full", TINY, device=torch.device("cpu"))
    assert all(p.requires_grad for p in full.parameters())  # lorakit.baselines' "ft"


def test_unknown_method_is_an_error():
    model = build_gpt2(**TINY)
    with pytest.raises(ValueError, match="Unknown method"):
        prepare(model, "adapter")
    for bad in (["--steps", "0"], ["--rounds", "0"], ["--warmup", "-1"]):
        with pytest.raises(SystemExit):
            main(["--small", "--device", "cpu", *bad])


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--steps", "-5"], "--steps: must be a whole number >= 1"),
        (["--batch", "-2"], "--batch: must be a whole number >= 1"),
        (["--dropout", "5"], "--dropout: must be in [0, 1)"),
        (["--warmup", "x"], "'x' is not an integer"),
        (["--out", "/proc/lorakit/bench"], "cannot be written"),
    ],
)
def test_out_of_range_arguments_are_refused_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--small", "--device", "cpu", *argv])
    assert info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["--small", "--device", "cuda"])
    assert "CUDA is not available on this machine" in capsys.readouterr().err
