"""Chapter 6's experiment reads the data asked for (``--data``) and records which it read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorakit.data.sources import RealDataUnavailable
from lorakit.experiments import finetune
from lorakit.fileio import file_sha256

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FIXTURE = Path(__file__).parent / "fixtures" / "e2e_real"


def test_data_folder_in_the_real_format_is_read_and_recorded(tmp_path):
    finetune.main(["--preset", "ci", "--device", "cpu", "--no-progress", "--methods", "lora",
                   "--data", str(FIXTURE), "--out", str(tmp_path)])
    record = json.loads((tmp_path / "ch06_finetune_ci.json").read_text())
    res = record["results"]
    assert res["data"]["source"] == "dir" and res["data"]["train_mrs"] == 3
    assert res["data"]["train_pairs"] == 3  # the ci preset keeps 1 reference per MR
    assert res["methods"]["lora"]["samples"][0]["mr"].startswith("name[Marigold Row]")
    assert record["config"]["data"] == str(FIXTURE)
    assert record["data"]["files"] == {name: file_sha256(FIXTURE / name) for name in
                                       ("trainset.csv", "devset.csv", "testset_w_refs.csv")}


def test_real_data_offline_and_not_cached_stops_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RealDataUnavailable, match="e2e-dataset"):
        finetune.main(["--preset", "ci", "--data", "real", "--out", str(tmp_path)])
    assert not (tmp_path / "ch06_finetune_ci.json").exists()
