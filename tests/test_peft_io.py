"""lorakit.export_peft / import_peft: adapters that PEFT loads with the same outputs, and back."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import lorakit
from lorakit.peft_io import PeftFormatError, export_peft, import_peft
from tests.conftest import make_tiny_gpt2

V = 300


def randomise_lora(model: nn.Module, seed: int) -> nn.Module:
    """Give every LoRA factor random values (as if trained: B is no longer zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.eval()


def lorakit_model(base, seed=0, **cfg):
    model = copy.deepcopy(base)
    lorakit.apply_lora(model, lorakit.LoRAConfig(**cfg))
    return randomise_lora(model, seed)


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


IDS = torch.randint(0, V, (3, 11), generator=torch.Generator().manual_seed(0))


def test_gpt2_qv_is_one_rank_2r_lora_on_c_attn_with_zero_k_rows(tmp_path):
    base = make_tiny_gpt2()
    model = lorakit_model(base, r=2, alpha=8, targets=["q", "v"])
    export_peft(model, tmp_path)
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 4 and cfg["lora_alpha"] == 16  # 2r, 2α
    assert cfg["fan_in_fan_out"] is True and cfg["task_type"] == "CAUSAL_LM"
    assert cfg["target_modules"] == ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]
    w = load_file(str(tmp_path / "adapter_model.safetensors"))
    layer = model.transformer.h[0].attn.c_attn
    A = w["base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"]
    B = w["base_model.model.transformer.h.0.attn.c_attn.lora_B.weight"]
    assert A.shape == (4, 32) and B.shape == (96, 4)
    assert torch.equal(B[32:64], torch.zeros(32, 4))  # k's rows
    assert torch.equal(B[:32, 2:], torch.zeros(32, 2)) and torch.equal(
        B[64:, :2], torch.zeros(32, 2)
    )
    # the exactness argument: (2α / 2r) · B A is the layer's own ΔW, slice by slice
    torch.testing.assert_close(16 / 4 * (B @ A), layer.delta_weight().detach())


def test_peft_loads_the_export_with_the_same_logits(tmp_path):
    peft = pytest.importorskip("peft")
    base = make_tiny_gpt2()
    model = lorakit_model(base, r=2, alpha=8, targets=["q", "v", "mlp_in", "re:.*wpe"], dropout=0.1)
    export_peft(model, tmp_path)
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path).eval()
    torch.testing.assert_close(logits(loaded, IDS), logits(model, IDS), atol=1e-5, rtol=1e-5)
    assert (logits(model, IDS) - logits(base, IDS)).abs().max() > 1e-2
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["rank_pattern"] == {"c_attn": 4} and cfg["alpha_pattern"] == {"c_attn": 16}
    assert cfg["lora_dropout"] == 0.1


@pytest.mark.parametrize(
    "settings",
    [
        dict(rslora=True, alpha=6, r=2, targets=["q", "k", "v"]),
        dict(bias="lora_only", r=2, targets=["v", "o"]),
        dict(bias="all", r=3, alpha=3, targets=["mlp_out"]),
    ],
)
def test_rslora_and_biases_travel_too(tmp_path, settings):
    peft = pytest.importorskip("peft")
    base = make_tiny_gpt2()
    model = lorakit_model(base, **settings)
    with torch.no_grad():  # biases that differ from the base's, as if trained
        for _, p in model.named_parameters():
            if p.requires_grad and p.dim() == 1:
                p.add_(0.3)
    export_peft(model, tmp_path)
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path).eval()
    torch.testing.assert_close(logits(loaded, IDS), logits(model, IDS), atol=1e-5, rtol=1e-5)
    back = import_peft(copy.deepcopy(base), tmp_path)
    torch.testing.assert_close(logits(back, IDS), logits(model, IDS), atol=1e-5, rtol=1e-5)


def test_round_trip_gives_back_the_same_layers(tmp_path):
    base = make_tiny_gpt2()
    model = lorakit_model(base, r=2, alpha=32, targets=["q", "v", "re:.*wpe"])
    export_peft(model, tmp_path / "peft")
    back = import_peft(copy.deepcopy(base), tmp_path / "peft")
    c_attn = back.transformer.h[1].attn.c_attn
    assert isinstance(c_attn, lorakit.FusedLoRALinear) and c_attn.enable == (True, False, True)
    assert c_attn.r == 2 and c_attn.scaling == 16.0
    ours, theirs = lorakit.lora_state_dict(model), lorakit.lora_state_dict(back)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    lorakit.save_adapter(back, tmp_path / "lk")  # one setting for all layers again


def test_import_a_peft_made_adapter_on_conv1d(tmp_path):
    peft = pytest.importorskip("peft")
    base = make_tiny_gpt2()
    config = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True, lora_dropout=0.05
    )
    pm = peft.get_peft_model(copy.deepcopy(base), config)
    randomise_lora(pm, 3)
    pm.save_pretrained(tmp_path)
    model = import_peft(copy.deepcopy(base), tmp_path)
    torch.testing.assert_close(logits(model, IDS), logits(pm, IDS), atol=1e-5, rtol=1e-5)
    layer = model.transformer.h[0].attn.c_attn
    assert type(layer) is lorakit.LoRALinear and layer.r == 4  # a whole-c_attn LoRA, as PEFT's
    assert model._lorakit_config.dropout == 0.05


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(50, 16)
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 8)

    def forward(self, ids):
        return self.fc2(torch.relu(self.fc1(self.emb(ids))))


def test_nn_linear_and_embedding_both_ways(tmp_path):
    peft = pytest.importorskip("peft")
    ids = torch.randint(0, 50, (4, 6))
    pm = peft.get_peft_model(
        Net(), peft.LoraConfig(r=3, lora_alpha=6, target_modules=["fc1", "emb"])
    )
    randomise_lora(pm, 4)
    pm.save_pretrained(tmp_path / "theirs")
    model = import_peft(Net(), tmp_path / "theirs")
    with torch.no_grad():
        torch.testing.assert_close(model(ids), pm(ids))
    export_peft(model, tmp_path / "ours")
    assert (
        json.loads((tmp_path / "ours" / "adapter_config.json").read_text())["fan_in_fan_out"]
        is False
    )
    again = peft.PeftModel.from_pretrained(Net(), tmp_path / "ours")
    with torch.no_grad():
        torch.testing.assert_close(again(ids), pm(ids))


def edit_config(folder, **changes):
    path = folder / "adapter_config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(use_dora=True), "use_dora"),
        (dict(init_lora_weights="pissa"), "rewrites the base"),
        (dict(modules_to_save=["lm_head"]), "modules_to_save"),
        (dict(peft_type="IA3"), "not a PEFT LoRA adapter"),
    ],
)
def test_what_lorakit_cannot_represent_is_refused(tmp_path, change, match):
    base = make_tiny_gpt2()
    export_peft(lorakit_model(base, r=2, targets=["q", "v"]), tmp_path)
    edit_config(tmp_path, **change)
    fresh = copy.deepcopy(base)
    with pytest.raises(PeftFormatError, match=match):
        import_peft(fresh, tmp_path)
    assert not list(lorakit.lora_layers(fresh))


def test_refusals_of_the_weights_leave_the_model_untouched(tmp_path):
    base = make_tiny_gpt2()
    export_peft(lorakit_model(base, r=2, targets=["q", "v", "mlp_in"]), tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    weights = load_file(str(path))
    # a DoRA magnitude vector: not plain LoRA
    save_file(
        {
            **weights,
            "base_model.model.transformer.h.0.mlp.c_fc.lora_magnitude_vector": torch.ones(128),
        },
        str(path),
    )
    with pytest.raises(PeftFormatError, match="magnitude"):
        import_peft(copy.deepcopy(base), tmp_path)
    # c_attn at rank 4 (2r) but mlp at rank 2 and alpha pattern removed: two scalings
    save_file(weights, str(path))
    edit_config(tmp_path, alpha_pattern={})
    with pytest.raises(PeftFormatError, match="different"):
        import_peft(copy.deepcopy(base), tmp_path)
    edit_config(tmp_path, alpha_pattern={"c_attn": 4})
    wide = make_tiny_gpt2(n_embd=64)
    with pytest.raises(PeftFormatError, match="another base"):
        import_peft(wide, tmp_path)
    assert not list(lorakit.lora_layers(wide))
    with pytest.raises(ValueError, match="already has LoRA"):
        import_peft(lorakit_model(base, r=2, targets=["q"]), tmp_path)
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        import_peft(copy.deepcopy(base), tmp_path / "missing")


def test_export_refusals(tmp_path):
    with pytest.raises(ValueError, match="no LoRA layers"):
        export_peft(make_tiny_gpt2(), tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        export_peft(lorakit_model(make_tiny_gpt2(), r=2, targets=["q"]), tmp_path / "file")
