"""The training-step benchmark harness (smoke test on a tiny CPU model; the GPU run is the lead's)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from lorakit.bench.train_step import apply_method, build_model, main, ratios


def test_train_step_small_cpu_writes_a_record(tmp_path, capsys):
    out = tmp_path / "train_step.json"
    main(["--small", "--device", "cpu", "--warmup", "0", "--steps", "2", "--out", str(out)])
    record = json.loads(out.read_text())
    res = record["results"]
    for method in ("full", "lorakit_qv", "lorakit_qkv"):
        r = res["methods"][method]
        assert r["step_ms"] > 0 and r["peak_mem_mb"] is None
        assert r["forward_ms"] > 0 and r["backward_ms"] > 0
    m = res["methods"]
    assert m["full"]["trainable_params"] == m["full"]["total_params"]
    # q,v and q,k,v LoRA: 2 and 3 slices of r x (k + d) per layer; tiny config: 2 layers, width 64
    assert m["lorakit_qv"]["trainable_params"] == 2 * 2 * 4 * (64 + 64)
    assert m["lorakit_qkv"]["trainable_params"] == 2 * 3 * 4 * (64 + 64)
    assert res["ratios"]["step_lorakit_qv_vs_full"] == pytest.approx(
        m["lorakit_qv"]["step_ms"] / m["full"]["step_ms"])
    if importlib.util.find_spec("peft") is None:
        assert "peft_qkv" not in m and "not installed" in res["notes"][0]
    assert "wrote" in capsys.readouterr().out


def test_ratios_and_goals():
    results = {"full": {"step_ms": 100.0, "peak_mem_mb": 1000.0},
               "lorakit_qv": {"step_ms": 70.0, "peak_mem_mb": 500.0},
               "lorakit_qkv": {"step_ms": 72.0, "peak_mem_mb": 520.0},
               "peft_qkv": {"step_ms": 90.0, "peak_mem_mb": 800.0}}
    r = ratios(results)
    assert r["step_lorakit_qkv_vs_peft_qkv"] == pytest.approx(0.8)
    assert r["goals"] == {"lorakit_step_le_0.75_full": True, "lorakit_step_le_0.9_peft": True,
                          "lorakit_mem_le_0.6_full": True}
    del results["peft_qkv"]
    assert ratios(results)["goals"]["lorakit_step_le_0.9_peft"] is None


def test_unknown_method_is_an_error():
    model = build_model({"n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 16,
                         "vocab_size": 32}, device=__import__("torch").device("cpu"), dropout=0.0)
    with pytest.raises(ValueError, match="Unknown method"):
        apply_method(model, "adapter")
    with pytest.raises(SystemExit):
        main(["--small", "--device", "cpu", "--steps", "0"])
