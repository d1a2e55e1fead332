"""The LoRA core: forward formula, init, gradients, merge/unmerge, fused slices, counts, errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.pytorch_utils import Conv1D

import lorakit
from lorakit import FusedLoRALinear, LoRAConfig, LoRALinear


def _linear(k=12, d=10, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return nn.Linear(k, d).to(dtype)


def _randomise_B(layer, seed=1):
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g).to(layer.lora_B.dtype))


def test_forward_matches_formula_in_float64():
    base = _linear()
    layer = LoRALinear(base, r=3, alpha=6.0)
    _randomise_B(layer)
    x = torch.randn(5, 12)
    W0, b = base.weight.double(), base.bias.double()
    A, B = layer.lora_A.double(), layer.lora_B.double()
    expected = x.double() @ W0.T + b + (6.0 / 3) * (x.double() @ A.T @ B.T)
    torch.testing.assert_close(layer(x).double(), expected, rtol=1e-5, atol=1e-5)


def test_delta_is_zero_at_init_and_output_equals_base():
    base = _linear()
    layer = LoRALinear(base, r=4, alpha=8)
    assert torch.count_nonzero(layer.delta_weight()) == 0
    assert layer.lora_A.abs().sum() > 0  # A random, B zero
    x = torch.randn(3, 12)
    torch.testing.assert_close(layer(x), base(x))


def test_gaussian_and_kaiming_inits_and_rslora():
    g = LoRALinear(_linear(k=400, d=400), r=8, init="gaussian")
    assert abs(g.lora_A.std().item() - 1 / 20) < 0.005
    k = LoRALinear(_linear(k=400, d=400), r=8, init="kaiming")
    assert k.lora_A.abs().max() <= 1 / 20 + 1e-6  # U(-1/sqrt(k), 1/sqrt(k))
    rs = LoRALinear(_linear(), r=4, alpha=8, rslora=True)
    assert rs.scaling == pytest.approx(8 / 2)


def test_only_A_and_B_get_gradients():
    layer = LoRALinear(_linear(), r=2)
    _randomise_B(layer)
    layer(torch.randn(4, 12)).sum().backward()
    assert layer.base.weight.grad is None and layer.base.bias.grad is None
    assert layer.lora_A.grad is not None and layer.lora_B.grad is not None


def _rounding_bounds(layer, x):
    """Elementwise first-order bounds on the rounding errors of merge (fp32 or bf16 weights).

    With ``u`` the unit roundoff of the layer's dtype (2⁻⁸ for bf16) and ``M = |x| (|W0| +
    s|B||A|)ᵀ + |b|``, which bounds every intermediate the two paths round (outputs, ``A x``,
    ``s·B A x``, the merged weight times ``x``): the merged path rounds its weight and its output
    (bias add included: 3 roundings), the unmerged path the base output, ``A x``, ``B A x``, the
    scaling and the sum (5), each by at most ``u·M``. Matmuls accumulate in fp32 (unit roundoff
    ``u32``): at most ``(k + r)·u32·M`` more. So ``|merged - unmerged| <= (8u + (k + r)·u32)·M``.

    Unmerge subtracts the same fp32 ``ΔW`` from the rounded ``W1 = fl(W0 + ΔW)`` and rounds
    again: ``|W0' - W0| <= u|W0 + ΔW| + u|W1 - ΔW| <= (2 + u)·u·(|W0| + |ΔW|)``, plus the fp32
    rounding of the two sums (``2·u32``). Over 200 seeds the largest error / bound was 0.20
    (merge) and 0.90 (round trip) in bf16.
    """
    W0, b = layer.base.weight.double(), layer.base.bias.double()
    A, B = layer.lora_A.double(), layer.lora_B.double()
    u, u32 = torch.finfo(layer.base.weight.dtype).eps / 2, 2.0**-24
    k, r = A.shape[1], A.shape[0]
    M = x.double().abs() @ (W0.abs() + layer.scaling * B.abs() @ A.abs()).T + b.abs()
    merge = (8 * u + (k + r) * u32) * M
    delta = layer.scaling * (B @ A)
    roundtrip = ((2 + u) * u + 2 * u32) * (W0.abs() + delta.abs())
    return merge, roundtrip, delta


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_merge_unmerge_roundtrip_and_outputs_within_computed_rounding_bounds(dtype):
    layer = LoRALinear(_linear(dtype=dtype), r=3, alpha=6)
    _randomise_B(layer)
    W0 = layer.base.weight.detach().clone()
    x = torch.randn(6, 12, dtype=dtype)
    layer.eval()
    unmerged = layer(x)
    merge_bound, roundtrip_bound, delta = _rounding_bounds(layer, x)
    layer.merge()
    layer.merge()  # idempotent
    merged = layer(x)
    assert ((merged.double() - unmerged.double()).abs() <= merge_bound).all()
    # the bound is below what a wrong merge would get wrong, the update ΔW x itself, for most
    # outputs (median bound / |ΔW x|: 0.18 in bf16, 1e-5 in fp32), so a lost or doubled ΔW fails
    assert (merge_bound < (x.double() @ delta.T).abs()).float().mean() > 0.8
    layer.unmerge()
    layer.unmerge()
    assert ((layer.base.weight.double() - W0.double()).abs() <= roundtrip_bound).all()


def test_training_while_merged_is_refused():
    layer = LoRALinear(_linear(), r=2)
    layer.merge()
    layer.train()
    with pytest.raises(RuntimeError, match="unmerge"):
        layer(torch.randn(2, 12))


def test_conv1d_and_linear_paths_agree():
    lin = _linear(k=8, d=6)
    conv = Conv1D(6, 8)
    with torch.no_grad():
        conv.weight.copy_(lin.weight.T)
        conv.bias.copy_(lin.bias)
    a, b = LoRALinear(lin, r=2, alpha=4), LoRALinear(conv, r=2, alpha=4)
    with torch.no_grad():
        b.lora_A.copy_(a.lora_A)
    _randomise_B(a)
    _randomise_B(b)
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(a(x), b(x))
    a.merge()
    b.merge()
    torch.testing.assert_close(a.base.weight, b.base.weight.T)


def _gpt2(n_layer=2, n_embd=32, n_head=2, seed=0):
    torch.manual_seed(seed)
    return GPT2LMHeadModel(
        GPT2Config(
            n_layer=n_layer,
            n_embd=n_embd,
            n_head=n_head,
            vocab_size=100,
            n_positions=64,
            resid_pdrop=0,
            embd_pdrop=0,
            attn_pdrop=0,
        )
    ).eval()


def test_gpt2_qv_leaves_k_slice_untouched_after_training():
    model = _gpt2()
    lorakit.apply_lora(model, LoRAConfig(r=2, alpha=4, targets=["q", "v"]))
    layer = model.transformer.h[0].attn.c_attn
    assert isinstance(layer, FusedLoRALinear)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    x = torch.randint(0, 100, (2, 10))
    model.train()
    for _ in range(3):
        opt.zero_grad()
        model(x, labels=x).loss.backward()
        opt.step()
    d = model.config.n_embd
    delta = layer.delta_weight()
    assert torch.count_nonzero(delta[d : 2 * d]) == 0  # k
    assert torch.count_nonzero(delta[:d]) > 0 and torch.count_nonzero(delta[2 * d :]) > 0
    model.eval()
    before = model(x).logits
    W_k = layer.base.weight[:, d : 2 * d].clone()
    lorakit.merge_lora(model)
    torch.testing.assert_close(layer.base.weight[:, d : 2 * d], W_k)
    torch.testing.assert_close(model(x).logits, before, rtol=1e-4, atol=1e-4)


def test_fused_forward_equals_explicit_delta():
    model = _gpt2()
    lorakit.apply_lora(model, LoRAConfig(r=2, alpha=4, targets=["q", "v"]))
    layer = model.transformer.h[1].attn.c_attn
    _randomise_B(layer)
    x = torch.randn(2, 7, 32)
    expected = layer.base(x) + x @ layer.delta_weight().T
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    qkv = copy.deepcopy(layer.base)
    full = FusedLoRALinear(qkv, r=2, alpha=4, enable=(True, True, True))
    _randomise_B(full)
    torch.testing.assert_close(full(x), qkv(x) + x @ full.delta_weight().T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 7), (5,), ()], ids=["3d", "2d", "1d"])
def test_fused_forward_and_grads_equal_the_formula_with_any_scaling(shape):
    torch.manual_seed(0)
    layer = FusedLoRALinear(Conv1D(3 * 16, 32), r=3, alpha=16, enable=(False, True, True))
    _randomise_B(layer)
    x = torch.randn(*shape, 32)

    def grads(y):
        A, B = layer.lora_A, layer.lora_B
        return (y, *torch.autograd.grad(y.pow(2).sum(), (A, B)))

    for scaling in (16 / 3, 0.7):  # the built-in one, then one set after construction
        layer.scaling = scaling
        got = grads(layer(x))
        want = grads(layer.base(x) + layer.lora_delta(x))
        assert got[0].shape == (*shape, 48)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)
    layer.to(torch.bfloat16)  # a bf16 layer, no autocast: the same formula in bf16
    xb = x.to(torch.bfloat16)
    y = layer(xb)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y, layer.base(xb) + layer.lora_delta(xb), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize(
    "n_layer,n_embd,n_head,expected",
    [
        (12, 768, 12, 147_456),  # GPT-2 small: 2 * (2*12) * 768 * 4
        (24, 1024, 16, 393_216),  # GPT-2 medium: 2 * (2*24) * 1024 * 4, the paper's count
    ],
)
def test_parameter_counts_match_paper_formula(n_layer, n_embd, n_head, expected):
    with torch.device("meta"):
        model = GPT2LMHeadModel(GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head))
    lorakit.apply_lora(model, LoRAConfig(r=4, alpha=32, targets=["q", "v"]))
    trainable, total = lorakit.count_parameters(model)
    L_hat = 2 * n_layer  # Wq and Wv in every layer
    assert trainable == expected == 2 * L_hat * n_embd * 4
    assert total > 100 * trainable


def test_short_names_o_and_mlp_and_report():
    model = _gpt2()
    report = lorakit.apply_lora(model, LoRAConfig(r=2, targets=["o", "mlp_in", "mlp_out"]))
    assert len(report.adapted) == 6 and "trainable" in str(report)
    names = set(lorakit.lora_factors(model))
    assert "transformer.h.0.mlp.c_fc" in names and "transformer.h.1.attn.c_proj" in names


def test_lora_factors_give_paper_shapes():
    model = _gpt2()
    lorakit.apply_lora(model, LoRAConfig(r=3, targets=["q", "v"]))
    f = lorakit.lora_factors(model)
    A, B = f["transformer.h.0.attn.c_attn.q"]
    assert A.shape == (3, 32) and B.shape == (32, 3)
    assert "transformer.h.0.attn.c_attn.k" not in f


def test_mark_only_lora_trainable_bias_modes():
    model = _gpt2()
    lorakit.apply_lora(model, LoRAConfig(r=2, targets=["q", "v"], bias="lora_only"))
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "transformer.h.0.attn.c_attn.base.bias" in names
    assert "transformer.h.0.mlp.c_fc.bias" not in names
    lorakit.mark_only_lora_trainable(model, bias="all")
    assert "transformer.h.0.mlp.c_fc.bias" in {
        n for n, p in model.named_parameters() if p.requires_grad
    }
    lorakit.mark_only_lora_trainable(model)
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)


def test_lora_embedding():
    emb = nn.Embedding(20, 6)
    layer = lorakit.LoRAEmbedding(emb, r=2, alpha=4)
    ids = torch.tensor([[1, 5, 7]])
    torch.testing.assert_close(layer(ids), emb(ids))
    _randomise_B(layer)
    expected = emb(ids) + layer.delta_weight()[ids]
    torch.testing.assert_close(layer(ids), expected)
    out = layer(ids)
    layer.eval()  # a merged layer refuses to train
    layer.merge()
    torch.testing.assert_close(layer(ids), out)
    layer.unmerge()
    layer.train()
    layer(ids).sum().backward()
    assert emb.weight.grad is None and layer.lora_B.grad is not None


# ---- bad input: clear errors, model untouched -------------------------------------------------


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, [type(m) for m in model.modules()]


def test_target_matching_nothing_lists_names_and_leaves_model():
    model = _gpt2()
    before = _snapshot(model)
    with pytest.raises(ValueError, match=r"matches no module.*attn\.c_attn"):
        lorakit.apply_lora(model, LoRAConfig(r=2, targets=["q", "query_proj"]))
    after = _snapshot(model)
    assert before[1] == after[1]
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(r=0), "positive integer"),
        (dict(r=-2), "positive integer"),
        (dict(alpha=0), "alpha"),
        (dict(alpha=-1.0), "alpha"),
        (dict(dropout=1.5), "dropout"),
        (dict(init="xavier"), "init"),
        (dict(bias="some"), "bias"),
        (dict(targets=[]), "targets"),
    ],
)
def test_bad_config_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LoRAConfig(**kwargs)


def test_rank_larger_than_min_dk():
    with pytest.raises(ValueError, match=r"min\(d, k\)"):
        LoRALinear(_linear(k=12, d=10), r=11)
    model = _gpt2()
    with pytest.raises(ValueError, match=r"min\(d, k\)"):
        lorakit.apply_lora(model, LoRAConfig(r=33, targets=["q"]))
    assert not list(lorakit.lora_layers(model))


def test_applying_twice_is_refused():
    model = _gpt2()
    lorakit.apply_lora(model, LoRAConfig(r=2, targets=["q", "v"]))
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="already has LoRA"):
        lorakit.apply_lora(model, LoRAConfig(r=2, targets=["v"]))
    assert all(torch.equal(sd[k], v) for k, v in model.state_dict().items())


def test_merging_a_model_without_lora():
    with pytest.raises(ValueError, match="apply_lora"):
        lorakit.merge_lora(_gpt2())
    with pytest.raises(ValueError, match="apply_lora"):
        lorakit.unmerge_lora(nn.Sequential(nn.Linear(3, 3)))


def test_short_name_on_unknown_architecture():
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match="module names instead"):
        lorakit.apply_lora(mlp, LoRAConfig(r=1, targets=["q"]))


def test_bad_init_or_dropout_leaves_the_base_trainable():
    base = _linear()
    for kwargs in (dict(init="xavier"), dict(dropout=1.5), dict(alpha=-1.0)):
        with pytest.raises(ValueError):
            LoRALinear(base, r=2, **kwargs)
        assert all(p.requires_grad for p in base.parameters())
    emb = nn.Embedding(10, 4)
    with pytest.raises(ValueError, match="init"):
        lorakit.LoRAEmbedding(emb, r=2, init="xavier")
    assert emb.weight.requires_grad


def test_tied_weights_are_refused_and_the_model_is_untouched():
    model = _gpt2()
    assert model.lm_head.weight is model.transformer.wte.weight
    for target in ("wte", "lm_head"):
        with pytest.raises(ValueError, match="tied"):
            lorakit.apply_lora(model, LoRAConfig(r=2, targets=[target]))
        assert not list(lorakit.lora_layers(model))
        assert all(p.requires_grad for p in model.parameters())


def test_lora_embedding_leaves_A_alone_under_max_norm():
    layer = lorakit.LoRAEmbedding(nn.Embedding(20, 8, max_norm=0.1), r=2, alpha=4)
    A = layer.lora_A.detach().clone()
    layer(torch.tensor([[1, 2, 3]]))
    torch.testing.assert_close(layer.lora_A, A)  # max_norm renormalises the table, not A


def test_lora_embedding_merge_in_bf16_and_merged_training_guard():
    emb = nn.Embedding(20, 8).to(torch.bfloat16)
    layer = lorakit.LoRAEmbedding(emb, r=2, alpha=4)
    _randomise_B(layer)
    ids = torch.tensor([[1, 2, 3]])
    layer.eval()
    out = layer(ids)
    W0 = emb.weight.detach().clone()
    layer.merge()
    torch.testing.assert_close(layer(ids), out, rtol=2e-2, atol=2e-2)
    layer.unmerge()
    torch.testing.assert_close(emb.weight, W0, rtol=2e-2, atol=2e-2)
    layer.merge()
    layer.train()
    with pytest.raises(RuntimeError, match="unmerge"):
        layer(ids)


def test_a_merge_that_would_overflow_fp16_is_refused_and_changes_nothing():
    """Item 12: W0 + ΔW beyond fp16's range: refused before any layer is written."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)).half()
    lorakit.apply_lora(model, LoRAConfig(r=2, alpha=2, targets=["0", "1"]))
    with torch.no_grad():
        model[1].base.weight.fill_(60000.0)
        for layer in (model[0], model[1]):
            layer.lora_A.fill_(100.0)
            layer.lora_B.fill_(100.0)  # ΔW = 1 * B A = 20000 everywhere
    before = [layer.base.weight.clone() for layer in (model[0], model[1])]
    with pytest.raises(
        ValueError, match=r"^1: Merging this LoRA layer would give non-finite weights"
    ):
        lorakit.merge_lora(model)
    assert [layer.merged for layer in (model[0], model[1])] == [False, False]
    assert all(torch.equal(b, layer.base.weight) for b, layer in zip(before, (model[0], model[1])))
    with pytest.raises(ValueError, match="non-finite"):
        model[1].merge()
    assert not model[1].merged and torch.equal(model[1].base.weight, before[1])
    model[0].merge()  # the layer that fits merges, and unmerges back to its base
    model[0].unmerge()
    assert torch.isfinite(model[0].base.weight).all()


def test_multihead_attention_projections_are_refused_before_anything_changes():
    """Item 13: nn.MultiheadAttention reads out_proj.weight itself: wrapping it breaks forward."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(2, 5, 8)
    expected = mha(x, x, x)[0]
    for model, target in (
        (mha, "out_proj"),
        (nn.TransformerEncoderLayer(8, 2, 16).eval(), "linear1"),
    ):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(ValueError, match="reads its layers' .weight directly"):
            lorakit.apply_lora(model, LoRAConfig(r=2, targets=[target]))
        assert not list(lorakit.lora_layers(model)) and all(
            p.requires_grad for p in model.parameters()
        )
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    torch.testing.assert_close(mha(x, x, x)[0], expected)
    decoder = nn.TransformerDecoderLayer(8, 2, 16, batch_first=True).eval()  # calls linear1/linear2
    out = decoder(x, x)
    lorakit.apply_lora(decoder, LoRAConfig(r=2, targets=["linear1", "linear2"]))
    torch.testing.assert_close(decoder(x, x), out)
