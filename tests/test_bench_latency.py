"""lorakit.bench.latency: the Table-1 benchmark runs end to end on a CPU in its --small mode."""

from __future__ import annotations

import json

import pytest
import torch

from lorakit.bench import latency


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
    for shape, row in res["cells"].items():
        assert set(row) == set(latency.METHODS)
        assert row["base"]["ratio"] == 1.0
        assert all(c["mean_ms"] > 0 and c["std_ms"] >= 0 and c["ratio"] > 0 for c in row.values())
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
