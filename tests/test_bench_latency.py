"""lorakit.bench.latency: the Table-1 benchmark runs end to end on a CPU in its --small mode."""

from __future__ import annotations

import json

import pytest
import torch

from lorakit.bench import _latency_report, latency


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_small_cpu_run_writes_a_record_with_every_method(tmp_path, capsys):
    out = tmp_path / "lat.json"
    latency.main(
        [
            "--small",
            "--device",
            "cpu",
            "--trials",
            "2",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--prefix",
            "4",
            "--out",
            str(out),
        ]
    )
    record = json.loads(out.read_text())
    res = record["results"]
    assert res["dtype"] == "fp32" and res["device_type"] == "cpu"
    assert list(res["cells"]) == ["1x16", "4x32"]
    d, L = res["arch"]["n_embd"], res["arch"]["n_layer"]
    assert res["modes"] == ["eager"] and res["statistic"] == "median"  # no graphs on a CPU
    for shape, row in res["cells"].items():
        assert set(row) == set(latency.METHODS)
        assert row["base"]["eager"]["ratio"] == 1.0
        for c in row.values():
            x = c["eager"]
            assert x["n"] == 2 and x["q1_ms"] <= x["median_ms"] <= x["q3_ms"]
            assert x["iqr_ms"] >= 0 and x["ratio"] > 0 and "graph" not in c
        assert row["prefix_layer"]["seq_len"] == int(shape.split("x")[1]) + 4  # sequence cost
    added = res["added_params"]
    assert added["lora_merged"] == added["lora_unmerged"] == 2 * (2 * L) * d * 4
    assert added["adapter_h"] > added["adapter_l"] > 0
    assert record["device"] and record["wall_s"] >= 0
    assert "lora_unmerged" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["--shapes", "16by256"],
        ["--trials", "1"],
        ["--methods", "adapter_x"],
        ["--warmup", "-1"],
        ["--lora-r", "0"],
        ["--threads", "-2"],
        ["--out", "/proc/lorakit/out"],
    ],
)
def test_bad_arguments_exit_with_a_message(argv, capsys):
    with pytest.raises(SystemExit):
        latency.main(["--small", "--device", "cpu", *argv])
    assert capsys.readouterr().err.strip()


def test_a_sequence_longer_than_the_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="positions"):
        latency.main(
            [
                "--small",
                "--device",
                "cpu",
                "--shapes",
                "1x126",
                "--prefix",
                "4",
                "--out",
                str(tmp_path),
            ]
        )


def test_a_smoke_run_never_writes_over_a_recorded_run(tmp_path, monkeypatch, capsys):
    """Item 14: --small without --out goes to a temporary folder; a full-size record is never
    replaced."""
    import lorakit.bench
    from lorakit.runs import RUNS_DIR

    recorded = RUNS_DIR / "bench" / "latency.json"
    before = recorded.read_bytes() if recorded.exists() else None
    monkeypatch.setattr(lorakit.bench, "SMALL_DIR", tmp_path / "small")
    small = [
        "--small",
        "--device",
        "cpu",
        "--trials",
        "2",
        "--warmup",
        "0",
        "--threads",
        "1",
        "--shapes",
        "1x8",
        "--methods",
        "lora_merged",
    ]
    latency.main(small)
    assert json.loads((tmp_path / "small" / "latency.json").read_text())["preset"] == "small"
    assert (recorded.read_bytes() if recorded.exists() else None) == before
    gpu = tmp_path / "recorded"
    gpu.mkdir()
    (gpu / "latency.json").write_text(json.dumps({"name": "latency", "preset": "gpu"}))
    for out in (gpu, gpu / "latency.json"):
        with pytest.raises(SystemExit):
            latency.main([*small, "--out", str(out)])
        assert "does not write over it" in capsys.readouterr().err
    assert json.loads((gpu / "latency.json").read_text()) == {"name": "latency", "preset": "gpu"}
    latency.main(
        [*small, "--out", str(tmp_path / "small")]
    )  # a smoke record may replace a smoke record


def test_rounds_give_every_call_its_trials_in_rotating_order():
    order = []

    class Call:
        def __init__(self, name):
            self.name = name

        def __call__(self):
            order.append(self.name)

    calls = {n: Call(n) for n in ("a", "b", "c")}
    times = latency.time_rounds(calls, trials=25, warmup=0, device=torch.device("cpu"))
    assert {n: len(t) for n, t in times.items()} == {"a": 25, "b": 25, "c": 25}
    firsts = [order[i] for i in range(0, 3 * latency.ROUND * 2, latency.ROUND)]
    assert firsts == ["a", "b", "c", "b", "c", "a"]  # each round starts one further on


def _record(ratios: dict, iqr: float = 0.02) -> dict:
    cells = {}
    for shape, row in ratios.items():
        cells[shape] = {
            m: {"eager": {"median_ms": 10 * r, "iqr_ms": 10 * r * iqr, "n": 100, "ratio": r}}
            for m, r in row.items()
        }
    return {"modes": ["eager"], "cells": cells}


def test_claims_follow_the_stated_rule():
    res = _record(
        {
            "1x128": {"base": 1.0, "adapter_l": 1.3, "adapter_h": 1.005, "lora_merged": 1.004},
            "32x512": {"base": 1.0, "adapter_l": 1.02, "adapter_h": 1.0, "lora_merged": 0.999},
        }
    )
    rows = {r["claim"].split(" ")[0]: r for r in latency.claims(res)}
    assert rows["adapter_l"]["verdict"] == "reproduced"
    assert rows["adapter_h"]["verdict"] == "not reproduced"  # +0.5% is within the noise
    assert rows["merged"]["verdict"] == "reproduced"
    res["cells"]["32x512"]["adapter_l"]["eager"]["ratio"] = 1.3
    assert latency.claims(res)[0]["verdict"] == "partly"  # slower, but not less at batch 32


def test_claim_rows_without_a_current_record_are_not_run(tmp_path):
    rows = latency.claim_rows(tmp_path)
    assert {r["verdict"] for r in rows} == {"not run"} and len(rows) == 2
    (tmp_path / "bench").mkdir()
    old = {"preset": "gpu", "results": {"cells": {"1x128": {"base": {"mean_ms": 1.0}}}}}
    (tmp_path / "bench" / "latency.json").write_text(json.dumps(old))
    assert "predates" in latency.claim_rows(tmp_path)[0]["why"]


def test_the_a_a_control_widens_the_noise_to_what_timing_alone_gives():
    # Merged LoRA 0.2% slower with 0.05% half-IQRs: "adds latency" by the spread alone; but the
    # base timed a second time (base_again) lands 0.4% off 1, so 0.2% is within what equal models
    # show, and the claim holds.
    shapes = ("1x128", "32x512")
    rows = {s: {"base": 1.0, "lora_merged": 1.002} for s in shapes}
    res = _record(rows, iqr=0.001)
    merged = [r for r in latency.claims(res) if r["claim"].startswith("merged")][0]
    assert merged["verdict"] == "not reproduced"
    res = _record({s: {**rows[s], "base_again": 0.996} for s in shapes}, iqr=0.001)
    merged = [r for r in latency.claims(res) if r["claim"].startswith("merged")][0]
    assert merged["verdict"] == "reproduced" and "±0.004" in merged["ours"]
    assert "A/A control" in merged["why"]
    assert (
        _latency_report.noise({"median_ms": 1, "iqr_ms": 0.1}, {"median_ms": 1, "iqr_ms": 0})
        == 0.05
    )


def test_recorded_ratios_reads_a_current_record_and_refuses_an_old_one():
    res = _record(
        {s: {"base": 1.0, "lora_merged": r} for s, r in (("1x128", 1.01), ("32x512", 1.0))}
    )
    ratios = latency.recorded_ratios({"results": res})
    assert list(ratios) == ["base", "lora_merged"]
    assert ratios["lora_merged"]["eager"] == {"1x128": 1.01, "32x512": 1.0}
    assert latency.is_current(res)
    old = {"results": {"cells": {"1x128": {"base": {"mean_ms": 1.0}}}}}
    assert latency.recorded_ratios(old) is None and latency.recorded_ratios(None) is None
    assert not latency.is_current({"cells": {}}) and not latency.is_current(None)
    assert "python -m lorakit.bench latency" in latency.NOT_RECORDED
