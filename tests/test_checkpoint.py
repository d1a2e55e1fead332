"""Adapters on disk: round trip, task switching, and clear errors for wrong bases or bad files."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

import lorakit
from lorakit import AdapterError, LoRAConfig
from lorakit.checkpoint import CONFIG, LEGACY_CONFIG, WEIGHTS


def _gpt2(n_embd=32, seed=0):
    torch.manual_seed(seed)
    return GPT2LMHeadModel(
        GPT2Config(n_layer=2, n_embd=n_embd, n_head=2, vocab_size=100, n_positions=64)
    ).eval()


def _train_a_bit(model, x, steps=3, lr=0.1):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        out = model(x, labels=x)
        out.loss.backward()
        opt.step()
    model.eval()


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_save_then_load_into_fresh_model_gives_identical_outputs(tmp_path):
    model = _gpt2()
    lorakit.apply_lora(model, LoRAConfig(r=2, alpha=8, targets=["q", "v", "mlp_out"], dropout=0.1))
    x = torch.randint(0, 100, (2, 12))
    _train_a_bit(model, x)
    expected = model(x).logits
    lorakit.save_adapter(model, tmp_path / "ad")
    meta = json.loads((tmp_path / "ad" / CONFIG).read_text())
    assert meta["lora"]["r"] == 2 and meta["modules"]["transformer.h.0.attn.c_attn"]["enable"] == [
        True,
        False,
        True,
    ]
    fresh = _gpt2()  # same seed -> same base weights
    lorakit.load_adapter(fresh, tmp_path / "ad")
    torch.testing.assert_close(fresh(x).logits, expected)
    assert lorakit.count_parameters(fresh)[0] == lorakit.count_parameters(model)[0]
    # only LoRA tensors on disk
    sd = lorakit.lora_state_dict(model)
    assert all("lora_" in k for k in sd)


def test_task_switching_by_swapping_adapters(tmp_path):
    model = _gpt2()
    lorakit.apply_lora(model, LoRAConfig(r=2, targets=["q", "v"]))
    x = torch.randint(0, 100, (2, 8))
    base_out = model(x).logits.clone()
    lorakit.save_adapter(model, tmp_path / "zero")
    _train_a_bit(model, x)
    task_out = model(x).logits.clone()
    lorakit.save_adapter(model, tmp_path / "task")
    lorakit.load_adapter(model, tmp_path / "zero")
    torch.testing.assert_close(model(x).logits, base_out)
    lorakit.merge_lora(model)
    lorakit.load_adapter(model, tmp_path / "task")  # merged model: unmerge, swap, merge again
    torch.testing.assert_close(model(x).logits, task_out, rtol=1e-4, atol=1e-4)


def test_loading_into_a_base_of_other_shapes_fails_and_leaves_model(tmp_path):
    model = _gpt2()
    lorakit.apply_lora(model, LoRAConfig(r=2, targets=["q", "v"]))
    lorakit.save_adapter(model, tmp_path / "ad")
    other = _gpt2(n_embd=48)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(AdapterError, match="different base model"):
        lorakit.load_adapter(other, tmp_path / "ad")
    assert not list(lorakit.lora_layers(other))
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())


def test_truncated_and_foreign_files(tmp_path):
    model = _gpt2()
    lorakit.apply_lora(model, LoRAConfig(r=2, targets=["q", "v"]))
    folder = lorakit.save_adapter(model, tmp_path / "ad")
    weights = folder / "adapter.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    snap = _snapshot(folder)
    fresh = _gpt2()
    with pytest.raises(AdapterError, match="truncated"):
        lorakit.load_adapter(fresh, folder)
    assert _snapshot(folder) == snap and not list(lorakit.lora_layers(fresh))
    weights.write_bytes(data)
    (folder / CONFIG).write_text("{not json")
    with pytest.raises(AdapterError, match="not valid JSON"):
        lorakit.load_adapter(fresh, folder)
    (folder / CONFIG).unlink()
    (folder / LEGACY_CONFIG).write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    with pytest.raises(AdapterError, match="not a lorakit adapter config but a PEFT adapter"):
        lorakit.load_adapter(fresh, folder)
    with pytest.raises(FileNotFoundError, match=CONFIG):
        lorakit.load_adapter(fresh, tmp_path / "nowhere")
    assert not list(lorakit.lora_layers(fresh))


def test_saving_requires_lora_and_unmerged(tmp_path):
    with pytest.raises(ValueError, match="apply_lora"):
        lorakit.save_adapter(_gpt2(), tmp_path / "x")
    model = _gpt2()
    lorakit.apply_lora(model, LoRAConfig(r=2, targets=["q"]))
    lorakit.merge_lora(model)
    with pytest.raises(ValueError, match="unmerge"):
        lorakit.save_adapter(model, tmp_path / "x")
    assert not (tmp_path / "x" / "adapter.safetensors").exists()


def test_loading_adapter_of_other_rank_into_adapted_model(tmp_path):
    a = _gpt2()
    lorakit.apply_lora(a, LoRAConfig(r=2, targets=["q", "v"]))
    lorakit.save_adapter(a, tmp_path / "r2")
    b = _gpt2()
    lorakit.apply_lora(b, LoRAConfig(r=4, targets=["q", "v"]))
    before = {k: v.clone() for k, v in b.state_dict().items()}
    with pytest.raises(AdapterError, match="rank or shape"):
        lorakit.load_adapter(b, tmp_path / "r2")
    assert all(torch.equal(before[k], v) for k, v in b.state_dict().items())


# ---- models that are not GPT-2 -----------------------------------------------------------------


def test_plain_mlp_train_merge_save_reload(tmp_path):
    torch.manual_seed(0)

    def make():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1)
        )

    mlp = make()
    report = lorakit.apply_lora(mlp, LoRAConfig(r=4, alpha=8, targets=["0", "2"]))
    assert report.adapted == ["0", "2"]
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    opt = torch.optim.Adam([p for p in mlp.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.mse_loss(mlp(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    mlp.eval()  # a merged layer refuses to train: A and B would get no gradient
    out = mlp(x)
    lorakit.merge_lora(mlp)
    torch.testing.assert_close(mlp(x), out, rtol=1e-5, atol=1e-5)
    lorakit.unmerge_lora(mlp)
    lorakit.save_adapter(mlp, tmp_path / "mlp")
    fresh = make()
    lorakit.load_adapter(fresh, tmp_path / "mlp")
    torch.testing.assert_close(fresh(x), out)


def test_bert_short_names_train_merge_save_reload(tmp_path):
    def make():
        torch.manual_seed(0)
        cfg = BertConfig(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=32,
            num_labels=2,
            hidden_dropout_prob=0,
            attention_probs_dropout_prob=0,
        )
        return BertForSequenceClassification(cfg).eval()

    bert = make()
    report = lorakit.apply_lora(bert, LoRAConfig(r=2, alpha=4, targets=["q", "v"]))
    assert len(report.adapted) == 4 and all("attention.self" in n for n in report.adapted)
    assert lorakit.count_parameters(bert)[0] == 2 * 4 * 32 * 2
    lorakit.mark_only_lora_trainable(bert)
    for p in bert.classifier.parameters():
        p.requires_grad_(True)  # a task head trains too
    x = torch.randint(0, 100, (8, 10))
    labels = torch.randint(0, 2, (8,))
    opt = torch.optim.AdamW([p for p in bert.parameters() if p.requires_grad], lr=1e-2)
    bert.train()
    first = None
    for _ in range(10):
        opt.zero_grad()
        loss = bert(x, labels=labels).loss
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first
    bert.eval()
    out = bert(x).logits
    lorakit.merge_lora(bert)
    torch.testing.assert_close(bert(x).logits, out, rtol=1e-4, atol=1e-4)
    lorakit.unmerge_lora(bert)
    lorakit.save_adapter(bert, tmp_path / "bert")
    fresh = make()
    fresh.classifier.load_state_dict(bert.classifier.state_dict())
    lorakit.load_adapter(fresh, tmp_path / "bert")
    torch.testing.assert_close(fresh(x).logits, out)


def test_adapter_with_other_scaling_is_refused_by_an_adapted_model(tmp_path):
    a = _gpt2()
    lorakit.apply_lora(a, LoRAConfig(r=2, alpha=16, targets=["q", "v"]))
    lorakit.save_adapter(a, tmp_path / "a16")
    b = _gpt2()
    lorakit.apply_lora(b, LoRAConfig(r=2, alpha=2, targets=["q", "v"]))
    before = {k: v.clone() for k, v in b.state_dict().items()}
    with pytest.raises(AdapterError, match="scaling"):
        lorakit.load_adapter(b, tmp_path / "a16")
    assert all(torch.equal(before[k], v) for k, v in b.state_dict().items())
    fresh = _gpt2()  # a fresh base gets the adapter's own alpha
    lorakit.load_adapter(fresh, tmp_path / "a16")
    assert fresh.transformer.h[0].attn.c_attn.scaling == 8.0


def test_edited_config_is_refused_before_the_model_changes(tmp_path):
    model = _gpt2()
    lorakit.apply_lora(model, LoRAConfig(r=2, targets=["q", "v"]))
    folder = lorakit.save_adapter(model, tmp_path / "ad")
    cfg = json.loads((folder / CONFIG).read_text())
    cfg["lora"]["r"] = 4  # edited by hand: the tensors say r = 2
    (folder / CONFIG).write_text(json.dumps(cfg))
    fresh = _gpt2()
    with pytest.raises(AdapterError, match="do not account for"):
        lorakit.load_adapter(fresh, folder)
    assert not list(lorakit.lora_layers(fresh))
    assert all(p.requires_grad for p in fresh.parameters())


def test_hand_built_layers_with_mixed_ranks_need_a_config(tmp_path):
    mlp = nn.Sequential(
        lorakit.LoRALinear(nn.Linear(4, 4), r=1), lorakit.LoRALinear(nn.Linear(4, 4), r=2)
    )
    with pytest.raises(ValueError, match="another rank or scaling"):
        lorakit.save_adapter(mlp, tmp_path / "x")
    assert not (tmp_path / "x" / "adapter.safetensors").exists()


# ---- all-or-nothing saves, one setting per adapter, lorakit's own file name, wrappers ----------

_SAVER = """
import sys, torch, lorakit
from torch import nn

def model(value, alpha):
    m = nn.Sequential(nn.Linear(256, 256), nn.Linear(256, 256))
    lorakit.apply_lora(m, lorakit.LoRAConfig(r=64, alpha=alpha, targets=["0", "1"]))
    for name, p in m.named_parameters():
        if "lora_" in name:
            p.data.fill_(value)
    return m

a, b = model(1.0, 8.0), model(2.0, 16.0)
lorakit.save_adapter(a, sys.argv[1])
print("ready", flush=True)
i = 1
while True:
    lorakit.save_adapter(b if i % 2 else a, sys.argv[1])
    i += 1
"""


def test_a_save_killed_at_any_moment_leaves_one_whole_adapter(tmp_path):
    """Item 6: kill -9 during saves alternating two adapters (same shapes, other alpha)."""
    folder = tmp_path / "ad"
    rng = random.Random(0)
    for _ in range(5):
        child = subprocess.Popen(
            [sys.executable, "-c", _SAVER, str(folder)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        meta, tensors = lorakit.read_adapter(folder)
        values = {v.unique().item() for v in tensors.values()}
        assert (meta["lora"]["alpha"], values) in [(8.0, {1.0}), (16.0, {2.0})]
        assert not [p for p in folder.iterdir() if p.is_dir()]  # no tmp* folders
    model = nn.Sequential(nn.Linear(4, 4))
    lorakit.apply_lora(model, LoRAConfig(r=2, targets=["0"]))
    lorakit.save_adapter(model, folder)  # the next save removes what the killed ones left
    assert sorted(p.name for p in folder.iterdir()) == [WEIGHTS, CONFIG]


def test_lora_applied_twice_needs_the_same_settings(tmp_path):
    """Item 7: other settings are refused before anything changes; same settings add targets."""
    model = _gpt2()
    lorakit.apply_lora(model, LoRAConfig(r=4, alpha=8, targets=["q", "v"]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for other in (
        LoRAConfig(r=8, alpha=8, targets=["mlp_in"]),
        LoRAConfig(r=4, alpha=16, targets=["mlp_in"]),
    ):
        with pytest.raises(ValueError, match="already has LoRA with other settings"):
            lorakit.apply_lora(model, other)
    assert model.state_dict().keys() == before.keys()
    lorakit.apply_lora(model, LoRAConfig(r=4, alpha=8, targets=["mlp_in"]))
    x = torch.randint(0, 100, (2, 8))
    _train_a_bit(model, x)
    expected = model(x).logits
    lorakit.save_adapter(model, tmp_path / "ad")
    fresh = _gpt2()
    lorakit.load_adapter(fresh, tmp_path / "ad")
    torch.testing.assert_close(fresh(x).logits, expected)
    with pytest.raises(ValueError, match="another rank or scaling"):
        lorakit.save_adapter(model, tmp_path / "x", config=LoRAConfig(r=4, alpha=32))


def test_saving_into_a_peft_folder_keeps_its_files_and_old_adapters_still_load(tmp_path):
    """Item 8: lorakit's config has its own name; adapters saved as adapter_config.json load."""
    folder = tmp_path / "peft"
    folder.mkdir()
    peft_cfg = json.dumps({"peft_type": "LORA", "r": 8, "target_modules": ["c_attn"]})
    (folder / LEGACY_CONFIG).write_text(peft_cfg)
    (folder / "adapter_model.safetensors").write_bytes(b"peft weights")
    model = _gpt2()
    lorakit.apply_lora(model, LoRAConfig(r=2, alpha=4, targets=["q", "v"]))
    x = torch.randint(0, 100, (2, 8))
    _train_a_bit(model, x)
    lorakit.save_adapter(model, folder)
    assert (folder / LEGACY_CONFIG).read_text() == peft_cfg
    assert (folder / "adapter_model.safetensors").read_bytes() == b"peft weights"
    fresh = _gpt2()
    lorakit.load_adapter(fresh, folder)  # lorakit's own config wins over PEFT's
    torch.testing.assert_close(fresh(x).logits, model(x).logits)
    old = tmp_path / "old"  # an adapter as lorakit wrote it before: adapter_config.json, format 1
    lorakit.save_adapter(model, old)
    meta = json.loads((old / CONFIG).read_text())
    meta.update(format_version=1)
    meta.pop("weights")
    for module in meta["modules"].values():  # no slice names before format 3: GPT-2's q, k, v
        assert module.pop("slices") == ["q", "k", "v"]
    (old / LEGACY_CONFIG).write_text(json.dumps(meta))
    (old / CONFIG).unlink()
    fresh = _gpt2()
    lorakit.load_adapter(fresh, old)
    torch.testing.assert_close(fresh(x).logits, model(x).logits)


def _rewrite(folder, meta, tensors):
    from safetensors.torch import save_file

    meta = dict(meta, tensors={k: list(v.shape) for k, v in tensors.items()})
    meta.pop("weights", None)  # as an older save, or a crafted file, would have it
    save_file(tensors, str(folder / WEIGHTS))
    (folder / CONFIG).write_text(json.dumps(meta))


def test_tensors_the_config_does_not_allow_are_refused_before_the_model_changes(tmp_path):
    """Item 9: a bias with bias="none", or any other module's tensor, never reaches the model."""
    model = _gpt2()
    lorakit.apply_lora(model, LoRAConfig(r=2, targets=["q", "v"]))
    folder = lorakit.save_adapter(model, tmp_path / "ad")
    meta, tensors = lorakit.read_adapter(folder)
    crafted = [
        {"transformer.h.0.attn.c_attn.base.bias": torch.full((96,), 5.0)},
        {"transformer.h.0.ln_1.bias": torch.full((32,), 5.0)},
        {"transformer.h.0.mlp.c_fc.weight": torch.zeros(32, 128)},
    ]
    for extra in crafted:
        _rewrite(folder, meta, {**tensors, **extra})
        for target in (_gpt2(), model):  # a fresh base, and an adapted one (task switching)
            before = {k: v.clone() for k, v in target.state_dict().items()}
            with pytest.raises(AdapterError, match="do not account for"):
                lorakit.load_adapter(target, folder)
            after = target.state_dict()
            assert after.keys() == before.keys() and all(
                torch.equal(before[k], after[k]) for k in before
            )
    meta["lora"]["bias"] = "lora_only"
    _rewrite(
        folder, meta, {**tensors, "transformer.h.0.attn.c_attn.base.bias": torch.full((96,), 5.0)}
    )
    fresh = _gpt2()
    lorakit.load_adapter(fresh, folder)  # allowed by its config: loaded
    assert torch.equal(fresh.transformer.h[0].attn.c_attn.base.bias, torch.full((96,), 5.0))


def test_adapters_of_compiled_and_data_parallel_models_load_into_the_plain_model(tmp_path):
    """Item 10: ``_orig_mod.`` and ``module.`` are not written to disk."""
    model = _gpt2()
    lorakit.apply_lora(model, LoRAConfig(r=2, targets=["q", "v"]))
    x = torch.randint(0, 100, (2, 8))
    _train_a_bit(model, x)
    expected = model(x).logits
    nested = _gpt2()
    nested.transformer = torch.compile(nested.transformer)  # a compiled submodule
    lorakit.apply_lora(nested, LoRAConfig(r=2, targets=["q", "v"]))
    for wrapped in (torch.compile(model), nn.DataParallel(model), nested):
        folder = lorakit.save_adapter(wrapped, tmp_path / type(wrapped).__name__)
        meta, tensors = lorakit.read_adapter(folder)
        assert not [
            k for k in [*meta["modules"], *tensors] if "_orig_mod" in k or k.startswith("module.")
        ]
        fresh = _gpt2()
        lorakit.load_adapter(fresh, folder)
        if wrapped is not nested:
            torch.testing.assert_close(fresh(x).logits, expected)
    lorakit.load_adapter(
        torch.compile(_gpt2()), tmp_path / "DataParallel"
    )  # into a wrapped model too


@pytest.mark.parametrize(
    "field,value,match",
    [
        (("lora", "r"), "4", r"lora.r must be a positive integer, got '4' \(str\)"),
        (("lora", "alpha"), "32", "lora.alpha must be a number > 0"),
        (("lora", "rslora"), "no", "lora.rslora must be True or False"),
        (("lora", "dropout"), 1.5, r"lora.dropout must be a number in \[0, 1\)"),
        (("modules",), [], "modules must be an object"),
        (("tensors",), {"x": "8"}, "tensors must be an object"),
    ],
)
def test_config_fields_of_the_wrong_type_are_named(tmp_path, field, value, match):
    model = _gpt2()
    lorakit.apply_lora(model, LoRAConfig(r=2, targets=["q", "v"]))
    folder = lorakit.save_adapter(model, tmp_path / "ad")
    meta = json.loads((folder / CONFIG).read_text())
    target = meta
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    (folder / CONFIG).write_text(json.dumps(meta))
    fresh = _gpt2()
    with pytest.raises(AdapterError, match=match):
        lorakit.load_adapter(fresh, folder)
    assert not list(lorakit.lora_layers(fresh))


def test_saving_to_a_path_that_is_a_file_is_refused(tmp_path):
    model = _gpt2()
    lorakit.apply_lora(model, LoRAConfig(r=2, targets=["q"]))
    file = tmp_path / "adapter.bin"
    file.write_bytes(b"keep me")
    with pytest.raises(ValueError, match="is a file; save_adapter writes a folder"):
        lorakit.save_adapter(model, file)
    with pytest.raises(ValueError, match="is a file, so the folder"):
        lorakit.save_adapter(model, file / "sub")
    assert file.read_bytes() == b"keep me"
