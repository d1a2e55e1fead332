"""Clear errors: each bad input says what was wrong and what to do, and changes nothing.

One test per input of the "clear errors" list: data files that are not UTF-8 or carry a BOM, a
``refs`` that is one string, a damaged saved model, sequences longer than ``n_positions``, bad
``LoRAConfig``/``apply_lora`` arguments, numbers a training run must not accept, and command-line
values out of range (refused by argparse before any work; see also test_bench_train_step.py and
test_bench_latency.py for the benchmarks, test_checkpoint.py for adapter files).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import lorakit
from lorakit import LoRAConfig
from lorakit.data.e2e_load import DataFileError, read_e2e_csv, read_jsonl
from lorakit.data.records import E2ERecord
from lorakit.models.gpt2 import build_gpt2
from lorakit.train import TrainConfig

# ---- data files -------------------------------------------------------------------------------


def test_a_non_utf8_jsonl_names_the_line_and_the_fix(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"mr": "name[A]", "refs": ["x"]}\n{"mr": "name[Caf\xe9]", "refs": ["y"]}\n')
    with pytest.raises(
        DataFileError, match=r"train.jsonl, line 2: not UTF-8 text \(byte 0xe9\).*UTF-8"
    ):
        read_jsonl(path)


def test_a_non_utf8_csv_names_the_line_and_the_fix(tmp_path):
    path = tmp_path / "devset.csv"
    path.write_bytes(b'mr,ref\n"name[A]","A."\n"name[Caf\xe9]","B."\n')
    with pytest.raises(DataFileError, match=r"devset.csv, line 3: not UTF-8 text"):
        read_e2e_csv(path)


def test_files_with_a_utf8_bom_load(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'\xef\xbb\xbf{"mr": "name[A]", "refs": ["A."]}\n')
    (tmp_path / "b.csv").write_bytes(b'\xef\xbb\xbf"mr","ref"\n"name[A]","A."\n')
    assert (
        read_jsonl(tmp_path / "a.jsonl")
        == read_e2e_csv(tmp_path / "b.csv")
        == [E2ERecord("name[A]", ("A.",))]
    )


def test_refs_that_is_one_string_is_refused_not_split_into_characters(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"mr": "name[A]", "refs": "A is a pub."}) + "\n")
    with pytest.raises(DataFileError, match="line 1.*'refs' is one string; it must be a list"):
        read_jsonl(path)
    with pytest.raises(TypeError, match="refs must be a list of texts, not one string"):
        E2ERecord("name[A]", "A is a pub.")


# ---- saved models and sequence length ---------------------------------------------------------


@pytest.fixture
def saved_model(tmp_path):
    from conftest import make_tiny_gpt2, make_tiny_tokenizer

    make_tiny_gpt2(n_positions=16).save_pretrained(tmp_path)
    make_tiny_tokenizer().save_pretrained(tmp_path)
    return tmp_path


def test_load_base_on_a_broken_config_json(saved_model):
    from lorakit.models import BaseCorruptError, load_base

    (saved_model / "config.json").write_text('{"model_type": "gpt2",')
    with pytest.raises(
        BaseCorruptError, match="config.json is not a model config.*save_pretrained"
    ):
        load_base(saved_model, device="cpu")


def test_load_base_on_a_truncated_weights_file(saved_model):
    from lorakit.models import BaseCorruptError, load_base

    weights = saved_model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(
        BaseCorruptError, match="a weights file cannot be read.*truncated or corrupt"
    ):
        load_base(saved_model, device="cpu")


def test_sequences_longer_than_n_positions_are_named(saved_model):
    from lorakit.models import load_base

    model, _, _ = load_base(saved_model, device="cpu")
    model(torch.zeros(1, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="17 positions .* n_positions=16.*Truncate"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="3 new after 15 cached"):
        past = model(torch.zeros(1, 15, dtype=torch.long), use_cache=True).past_key_values
        model(torch.zeros(1, 3, dtype=torch.long), past_key_values=past)
    built = build_gpt2(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=8)
    with pytest.raises(ValueError, match="n_positions=8"):
        built(torch.zeros(1, 9, dtype=torch.long))


# ---- LoRA settings and arguments ---------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(targets=["re:("]), r"target 're:\(' is not a valid regular expression"),
        (dict(targets=None), "targets must be a non-empty list of names, got None"),
        (dict(alpha="32"), "alpha must be a number > 0, got '32'"),
        (dict(dropout=5), r"dropout must be a number in \[0, 1\)"),
        (dict(rslora="yes"), "rslora must be True or False"),
    ],
)
def test_bad_lora_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LoRAConfig(**kwargs)


def test_apply_lora_needs_a_module_and_a_config():
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(TypeError, match="apply_lora needs a torch.nn.Module, got str"):
        lorakit.apply_lora("model", LoRAConfig(targets=["0"], r=2))
    with pytest.raises(TypeError, match="apply_lora needs a lorakit.LoRAConfig, got dict"):
        lorakit.apply_lora(model, {"r": 2, "targets": ["0"]})
    assert isinstance(model[0], nn.Linear) and model[0].weight.requires_grad


# ---- numbers a training run must not accept (item 11) ------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(grad_clip=-1.0), r"grad_clip must be a finite number >= 0"),
        (dict(lr=math.inf), r"lr must be a finite number > 0, got inf"),
        (dict(lr=float("nan")), r"lr must be a finite number > 0"),
        (dict(weight_decay=-0.01), r"weight_decay must be a finite number >= 0"),
        (dict(epochs=2.5), r"epochs must be a whole number >= 1, got 2.5"),
        (dict(max_steps=0), r"max_steps must be a whole number >= 1 or None"),
        (dict(grad_accum=True), r"grad_accum must be a whole number"),
        (dict(warmup_steps=-1), r"warmup_steps must be a whole number >= 0"),
        (dict(label_smoothing=1.0), r"label_smoothing must be a finite number >= 0 and < 1"),
        (dict(seed=1.5), r"seed must be a whole number"),
        (dict(progress="no"), r"progress must be True or False"),
    ],
)
def test_train_config_refuses_numbers_that_would_misbehave(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_grad_clip_zero_or_none_means_no_clipping():
    assert TrainConfig(grad_clip=0).grad_clip == 0 and TrainConfig(grad_clip=None).grad_clip is None


# ---- command lines: refused by argparse, before any work --------------------------------------


def _cli(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


def test_experiment_command_lines_refuse_out_of_range_values(tmp_path, capsys):
    from lorakit.experiments import baselines, pretrain, which_rank

    assert "--max-steps: must be a whole number >= 1, got -1" in _cli(
        pretrain.main, ["--max-steps", "-1"], capsys
    )
    assert "--steps: must be a whole number >= 1, got -5" in _cli(
        baselines.main, ["--steps", "-5"], capsys
    )
    assert "--jobs: must be a whole number >= 1, got 0" in _cli(
        which_rank.main, ["--jobs", "0"], capsys
    )
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for main in (pretrain.main, baselines.main, which_rank.main):
        assert "is a file, not a folder" in _cli(main, ["--out", str(blocker / "runs")], capsys)
    assert "cannot be written" in _cli(baselines.main, ["--out", "/proc/lorakit-runs"], capsys)
    assert blocker.read_text() == "x"


def test_a_shortened_schedule_needs_a_folder_of_its_own(capsys):
    # in the preset's folder a shortened run would count as a finished run of the plan
    from lorakit.experiments import baselines, which_rank

    err = _cli(baselines.main, ["--steps", "3", "--test-mrs", "2"], capsys)
    assert "--steps, --test-mrs" in err and "--out DIR" in err
    assert "--out DIR" in _cli(which_rank.main, ["--epochs", "1"], capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_refused(capsys):
    from lorakit.experiments import baselines, which_rank

    for main in (baselines.main, which_rank.main):
        assert "CUDA is not available on this machine" in _cli(main, ["--device", "cuda"], capsys)


def test_data_generate_refuses_negative_sizes(tmp_path, capsys):
    from lorakit.data.__main__ import main

    out = tmp_path / "e2e"
    err = _cli(main, ["generate", "--out", str(out), "--sizes", "-1", "0", "0"], capsys)
    assert "--sizes: must be a whole number >= 0, got -1" in err
    assert not out.exists()
