"""lorakit.serving: N adapters on one base, each row of a batch with its own, equal to each
alone.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import lorakit
from lorakit.serving import MultiAdapterModel, MultiLoRAEmbedding, MultiLoRALinear
from tests.conftest import make_tiny_gpt2

V = 300


def trained(base: nn.Module, seed: int, **cfg) -> nn.Module:
    """A copy of ``base`` with LoRA applied and B drawn at random (as if trained)."""
    model = copy.deepcopy(base)
    lorakit.apply_lora(model, lorakit.LoRAConfig(**cfg))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.eval()


@pytest.fixture
def gpt2_adapters():
    """A tiny GPT-2 base and three adapters: q,v (the fused layer); q,k,v + MLP at another rank;
    v + the position embedding (an embedding LoRA)."""
    base = make_tiny_gpt2()
    adapters = {
        "qv": trained(base, 1, r=2, alpha=8, targets=["q", "v"]),
        "qkv_mlp": trained(base, 2, r=4, alpha=4, targets=["q", "k", "v", "mlp_out"]),
        "v_wpe": trained(base, 3, r=3, alpha=6, targets=["v", "re:.*wpe"]),
    }
    return base, adapters


def test_mixed_batch_rows_equal_each_adapter_alone(gpt2_adapters):
    base, adapters = gpt2_adapters
    served = MultiAdapterModel(copy.deepcopy(base), adapters)
    ids = torch.randint(0, V, (6, 12), generator=torch.Generator().manual_seed(0))
    names = ["qv", None, "v_wpe", "qkv_mlp", "v_wpe", "qv"]
    with torch.no_grad():
        out = served(ids, adapter_names=names).logits
        for i, name in enumerate(names):
            alone = (adapters[name] if name else base)(ids[i : i + 1]).logits
            torch.testing.assert_close(out[i : i + 1], alone, atol=1e-5, rtol=1e-5)
            if name:  # the adapter really changes the output, so the check can fail
                assert (alone - base(ids[i : i + 1]).logits).abs().max() > 1e-2
    layers = served.multi_layers()
    assert isinstance(layers["transformer.wpe"], MultiLoRAEmbedding)
    assert isinstance(layers["transformer.h.0.attn.c_attn"], MultiLoRALinear)
    assert served.names == ["qv", "qkv_mlp", "v_wpe"]


def test_one_adapter_for_every_row_and_all_base(gpt2_adapters):
    base, adapters = gpt2_adapters
    served = MultiAdapterModel(copy.deepcopy(base), adapters)
    ids = torch.randint(0, V, (3, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for name, model in adapters.items():
            torch.testing.assert_close(
                served(ids, adapter_names=name).logits, model(ids).logits, atol=1e-5, rtol=1e-5
            )
            torch.testing.assert_close(
                served(ids, adapter_names=[name] * 3).logits,
                model(ids).logits,
                atol=1e-5,
                rtol=1e-5,
            )
        torch.testing.assert_close(served(ids, adapter_names=[None] * 3).logits, base(ids).logits)


class TwoLinear(nn.Module):
    """A model of plain nn.Linear layers (no GPT-2): LoRALinear on nn.Linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.up, self.down = nn.Linear(8, 16), nn.Linear(16, 5)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


def test_linear_layers_of_any_model_and_2d_inputs():
    base = TwoLinear().eval()
    a = trained(base, 4, r=2, alpha=4, targets=["up"])
    b = trained(base, 5, r=3, alpha=3, targets=["up", "down"])
    served = MultiAdapterModel(copy.deepcopy(base), {"a": a, "b": b})
    for shape in ((4, 8), (4, 7, 8)):
        x = torch.randn(shape)
        names = ["b", "a", None, "b"]
        with torch.no_grad():
            out = served(x, adapter_names=names)
            for i, name in enumerate(names):
                torch.testing.assert_close(
                    out[i],
                    ({"a": a, "b": b}.get(name, base))(x[i : i + 1])[0],
                    atol=1e-6,
                    rtol=1e-5,
                )


def test_embedding_rows_with_positions_shared_by_the_batch():
    """GPT-2 may look positions up as (1, T) for the whole batch: each row still gets its own."""
    emb = nn.Embedding(20, 6)
    base = nn.Sequential()
    base.add_module("wpe", emb)
    a = trained(base, 6, r=2, alpha=2, targets=["wpe"])
    b = trained(base, 7, r=4, alpha=8, targets=["wpe"])
    served = MultiAdapterModel(copy.deepcopy(base), {"a": a, "b": b})
    served.router.set(served.route_of(["b", None, "a"])[0])
    served.router.batch = 3
    pos = torch.arange(5)[None]  # (1, T)
    with torch.no_grad():
        out = served.model.wpe(pos)
    assert out.shape == (3, 5, 6)
    torch.testing.assert_close(out[0], b(pos)[0])
    torch.testing.assert_close(out[1], base(pos)[0])
    torch.testing.assert_close(out[2], a(pos)[0])


class CountOps(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def test_the_branch_is_gathered_matmuls_not_a_loop_over_rows(gpt2_adapters):
    """The torch calls of a mixed forward do not grow with the rows or the adapters they name."""
    base, adapters = gpt2_adapters
    served = MultiAdapterModel(copy.deepcopy(base), adapters)
    layer = served.model.transformer.h[0].attn.c_attn
    calls = {}
    for rows, pool in ((2, [None, "qv"]), (16, [None, "qv", "qkv_mlp", "v_wpe"])):
        names = [pool[i % len(pool)] for i in range(rows)]
        x = torch.randn(rows, 5, 32)
        with served.rows(names), torch.no_grad():
            layer(x)  # fills the router's cache of per-row slots
            with CountOps() as count:
                layer(x)
        calls[rows] = count.calls
    assert calls[2] == calls[16], calls


def test_beam_search_on_a_mixed_batch_equals_each_adapter_alone(gpt2_adapters, tiny_tokenizer):
    from lorakit.evaluate import generate_texts

    base, adapters = gpt2_adapters
    base.config.eos_token_id = base.config.pad_token_id = tiny_tokenizer.eos_token_id
    served = MultiAdapterModel(copy.deepcopy(base), adapters)
    mrs = [
        "name[The Eagle], food[Japanese]",
        "name[Near], area[riverside]",
        "name[A], eatType[pub], near[Burger King]",
        "name[The Eagle]",
    ]
    names = ["qkv_mlp", None, "qv", "v_wpe"]
    kw = dict(max_new_tokens=8, num_beams=3, device="cpu")
    with served.rows(names):
        mixed = generate_texts(served, tiny_tokenizer, mrs, batch_size=4, **kw)
    alone = [
        generate_texts(adapters[n] if n else base, tiny_tokenizer, [mr], batch_size=1, **kw)[0]
        for mr, n in zip(mrs, names)
    ]
    assert mixed == alone
    assert len(set(alone)) > 1  # the adapters write different texts
    assert served.generate_texts(tiny_tokenizer, mrs, names, batch_size=3, **kw) == alone


def test_adapters_from_folders_lorakit_and_peft(gpt2_adapters, tmp_path):
    base, adapters = gpt2_adapters
    lorakit.save_adapter(adapters["qv"], tmp_path / "lk")
    from lorakit.peft_io import export_peft

    export_peft(adapters["v_wpe"], tmp_path / "peft")
    served = MultiAdapterModel(
        copy.deepcopy(base), {"lk": tmp_path / "lk", "pf": tmp_path / "peft"}
    )
    ids = torch.randint(0, V, (2, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = served(ids, adapter_names=["pf", "lk"]).logits
        torch.testing.assert_close(out[:1], adapters["v_wpe"](ids[:1]).logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[1:], adapters["qv"](ids[1:]).logits, atol=1e-5, rtol=1e-5)


def test_remove_and_add_adapters(gpt2_adapters):
    base, adapters = gpt2_adapters
    served = MultiAdapterModel(copy.deepcopy(base), adapters)
    served.remove_adapter("qkv_mlp")
    served.add_adapter("again", adapters["qkv_mlp"])
    assert served.names == ["qv", "v_wpe", "again"]
    ids = torch.randint(0, V, (3, 6), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = served(ids, adapter_names=["again", "v_wpe", "qv"]).logits
        for i, m in enumerate([adapters["qkv_mlp"], adapters["v_wpe"], adapters["qv"]]):
            torch.testing.assert_close(
                out[i : i + 1], m(ids[i : i + 1]).logits, atol=1e-5, rtol=1e-5
            )
    with pytest.raises(KeyError, match="qkv_mlp"):
        served(ids, adapter_names=["qkv_mlp"] * 3)


def test_bf16_base_keeps_its_dtype(gpt2_adapters):
    base, adapters = gpt2_adapters
    served = MultiAdapterModel(copy.deepcopy(base).to(torch.bfloat16), adapters)
    layer = served.model.transformer.h[0].attn.c_attn
    assert layer.lora_A.dtype == layer.lora_B.dtype == torch.bfloat16
    ids = torch.randint(0, V, (2, 5))
    with torch.no_grad():
        ref = adapters["qv"](ids[:1]).logits
        out = served(ids, adapter_names=["qv", None]).logits.float()
    assert (out[:1] - ref).abs().max() < 0.1 * ref.abs().max()


def test_errors_say_what_was_wrong(gpt2_adapters):
    base, adapters = gpt2_adapters
    served = MultiAdapterModel(copy.deepcopy(base), {"qv": adapters["qv"]})
    ids = torch.randint(0, V, (2, 5))
    with pytest.raises(ValueError, match="adapter_names"):
        served(ids)
    with pytest.raises(ValueError, match="2 rows but 3"):
        served(ids, adapter_names=["qv", None, "qv"])
    with pytest.raises(KeyError, match="loaded"):
        served(ids, adapter_names=["nope", None])
    with pytest.raises(ValueError, match="already"):
        served.add_adapter("qv", adapters["qv"])
    with pytest.raises(ValueError, match="LoRA layers"):
        MultiAdapterModel(adapters["qv"])
    wide = trained(make_tiny_gpt2(n_embd=64), 8, r=2, targets=["q", "v"])
    before = {k: v.clone() for k, v in served.state_dict().items()}
    with pytest.raises(ValueError, match="another base"):
        served.add_adapter("wide", wide)
    after = served.state_dict()
    assert served.names == ["qv"] and all(torch.equal(before[k], after[k]) for k in before)
    biased = copy.deepcopy(base)
    lorakit.apply_lora(biased, lorakit.LoRAConfig(r=2, targets=["q", "v"], bias="all"))
    with pytest.raises(ValueError, match="bias"):
        served.add_adapter("biased", biased)


def test_factors_for_a_module_that_lora_does_not_adapt_are_refused(gpt2_adapters):
    from lorakit.serving import Factors

    base, _ = gpt2_adapters
    served = MultiAdapterModel(copy.deepcopy(base))
    block = {"transformer.h.0": Factors("linear", torch.zeros(2, 32), torch.zeros(32, 2), 1.0)}
    with pytest.raises(ValueError, match="GPT2Block"):
        served.add_adapter("block", block)
    missing = {
        "transformer.h.9.attn.c_attn": Factors(
            "linear", torch.zeros(2, 32), torch.zeros(96, 2), 1.0
        )
    }
    with pytest.raises(ValueError, match="does not have"):
        served.add_adapter("missing", missing)
    assert served.names == [] and not served.multi_layers()
