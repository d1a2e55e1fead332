"""lorakit.bench.serving: the serving benchmark runs end to end on a CPU in its --small mode."""

from __future__ import annotations

import json

import pytest

from lorakit.bench import serving


def test_small_cpu_run_writes_a_record_with_every_row(tmp_path, capsys, one_torch_thread):
    out = tmp_path / "serving.json"
    serving.main(["--smoke", "--device", "cpu", "--trials", "2", "--out", str(out)])
    record = json.loads(out.read_text())
    assert record["preset"] == "small"
    res = record["results"]
    assert res["dtype"] == "fp32" and list(res["times"]) == ["eager"]  # no CUDA graphs on a CPU
    rows = res["times"]["eager"]
    want = {"mixed", "one_unmerged", "unmerged_b1", "lorakit_layer_b1", "merged", "merged_b1"}
    assert want <= set(rows) and all(rows[r]["median_ms"] > 0 for r in want)
    ratios = res["ratios"]
    assert ratios["mixed_vs_merged"]["goal"] == "<= 1.15" and ratios["mixed_vs_merged"]["value"] > 0
    graph = ratios["b1_unmerged_vs_merged_graph"]
    assert graph["value"] is None and graph["met"] is None and "graph" in graph["why"]
    checks = res["checks"]
    assert len(checks["names"]) == serving.SMALL["rows"]
    assert checks["max_abs_diff_mixed_vs_merged_a0_rows"] < 1e-4 * max(1.0, checks["logit_scale"])
    mem, n_layer, d = (
        res["memory"],
        serving.SMALL["arch"]["n_layer"],
        serving.SMALL["arch"]["n_embd"],
    )
    assert mem["n"] == list(range(1, 101))
    assert checks["params"]["adapter"] == 2 * (2 * n_layer) * d * serving.LORA["r"]  # 2·L̂·d·r
    base, adapter = checks["params"]["base"], checks["params"]["adapter"]
    assert mem["adapters"][99] == (base + 100 * adapter) * 4 and mem["copies"][99] == 100 * base * 4
    if res["peft"]:
        assert "median_ms" in rows["peft_mixed"]
        assert checks["max_abs_diff_peft_vs_lorakit_mixed"] < 1e-4 * max(1.0, checks["logit_scale"])
        assert ratios["mixed_vs_peft"]["value"] > 0
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--trials", "0"], ["--dtype", "int8"], ["--out", "/proc/x/y"]])
def test_bad_arguments_exit_with_a_message(argv, capsys):
    with pytest.raises(SystemExit):
        serving.main(["--small", "--device", "cpu", *argv])
    assert capsys.readouterr().err.strip()


def test_memory_of_n_adapters_against_n_copies():
    from lorakit.serving import serving_bytes

    mem = serving_bytes(354_823_168, 393_216, [1, 100])
    assert mem["copies"][1] / mem["adapters"][1] > 90  # 100 copies vs one base + 100 adapters
    assert mem["adapters"][0] == (354_823_168 + 393_216) * 2
    with pytest.raises(ValueError, match="base_params"):
        serving_bytes(0, 1, [1])
