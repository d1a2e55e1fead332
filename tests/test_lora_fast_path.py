"""Both paths of a LoRA layer compute the formula: the plain one (default) and the fused one
(``fast_path``, :mod:`lorakit.lora.fast`); the fast-path switch; ``cast_frozen_`` is exact.

References below are written out op by op, in float64: ``base(x) + s·B A dropout(x)``, per slice
for a fused projection. Same seed -> same dropout mask (``native_dropout``, which the fused
Functions call, is the kernel ``nn.Dropout`` uses), so outputs and gradients must agree to
float64 rounding, with and without dropout.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_gpt2
from torch import nn
from transformers.pytorch_utils import Conv1D

import lorakit
from lorakit import FusedLoRALinear, LoRAConfig, LoRALinear
from lorakit.lora.fast import fast_path, set_fast_path
from lorakit.lora.fast.blocks import block_diagonal_B, diagonal_blocks
from lorakit.lora.fast.function import BranchUpdate, StackedMatmul
from lorakit.lora.precision import cast_frozen_, frozen_matmul_weights

# q,v (the paper's), q,k,v, single slices, and 4 slices with uneven gaps (no single strided view)
SLICES = [
    (True, False, True),
    (True, True, True),
    (False, True, False),
    (False, False, True),
    (True, True, False, True),
]


def _randomise(layer, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (layer.lora_A, layer.lora_B):
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype))


def _reference(layer, x):
    """The previous forward, op by op (dropout module, then A, then B per enabled slice)."""
    out = layer.base(x)
    h = F.linear(layer.lora_dropout(x), layer.lora_A)
    if not isinstance(layer, FusedLoRALinear):
        return out + F.linear(h, layer.lora_B) * layer.scaling
    parts, j, r = [], 0, layer.r
    for on in layer.enable:
        if on:
            parts.append(F.linear(h[..., j * r : (j + 1) * r], layer.lora_B[j]) * layer.scaling)
            j += 1
        else:
            parts.append(torch.zeros_like(out[..., : layer.d_slice]))
    return out + torch.cat(parts, dim=-1)


def _grads(layer, fn, x, seed):
    x = x.clone().requires_grad_(True)
    torch.manual_seed(seed)
    y = fn(x)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(7), dtype=y.dtype)
    (y * w).sum().backward()
    grads = [x.grad] + [p.grad.clone() for p in layer.parameters() if p.requires_grad]
    layer.zero_grad(set_to_none=True)
    return y.detach(), grads


def _fused(enable, k=12, d_s=6, r=2, dropout=0.0, conv=True, fast=False):
    torch.manual_seed(0)
    n = len(enable)
    base = Conv1D(n * d_s, k) if conv else nn.Linear(k, n * d_s)
    layer = FusedLoRALinear(
        base.double(),
        r=r,
        alpha=3.0,
        dropout=dropout,
        enable=enable,
        slice_names=("q", "k", "v", "o")[:n],
    )
    _randomise(layer)
    layer.fast_path = fast
    return layer


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("enable", SLICES)
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("conv", [True, False])
def test_fused_forward_and_backward_equal_reference(enable, dropout, conv, fast):
    layer = _fused(enable, dropout=dropout, conv=conv, fast=fast).train()
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    y_new, g_new = _grads(layer, layer, x, seed=3)
    y_ref, g_ref = _grads(layer, lambda t: _reference(layer, t), x, seed=3)
    torch.testing.assert_close(y_new, y_ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(g_new, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    if not all(enable):  # a disabled slice gets neither an update nor a gradient path
        off = enable.index(False) * layer.d_slice
        torch.testing.assert_close(
            y_new[..., off : off + layer.d_slice], layer.base(x)[..., off : off + layer.d_slice]
        )


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("conv", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_plain_layer_equals_reference_and_bias_still_trains(dropout, conv, fast):
    torch.manual_seed(0)
    base = Conv1D(7, 9) if conv else nn.Linear(9, 7)
    layer = LoRALinear(base.double(), r=3, alpha=6, dropout=dropout).train()
    _randomise(layer)
    layer.fast_path = fast
    layer.base.bias.requires_grad_(True)  # as mark_only_lora_trainable(bias="all") does
    x = torch.randn(4, 9, dtype=torch.float64)
    y_new, g_new = _grads(layer, layer, x, seed=5)
    y_ref, g_ref = _grads(layer, lambda t: _reference(layer, t), x, seed=5)
    assert len(g_new) == 4  # x, bias, A, B
    torch.testing.assert_close(y_new, y_ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(g_new, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fast", [False, True])
def test_dropout_semantics_train_eval_and_rate(fast):
    layer = _fused((True, False, True), k=64, d_s=32, r=4, dropout=0.5, fast=fast)
    x = torch.randn(8, 64, dtype=torch.float64)
    layer.train()
    torch.manual_seed(0)
    a = layer(x)
    torch.manual_seed(0)
    assert torch.equal(layer(x), a)  # same seed, same mask
    assert not torch.allclose(layer(x), a)  # next mask differs
    layer.eval()  # no dropout: the deterministic formula
    expected = layer.base(x) + x @ layer.delta_weight().T
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)
    # with dropout the branch is unbiased: averaging many masks gives the eval-mode output
    layer.train()
    torch.manual_seed(1)
    mean = torch.stack([layer(x) for _ in range(400)]).mean(0)
    assert (mean - expected).abs().max() < 0.25 * (expected - layer.base(x)).abs().max()


def test_branch_update_gradcheck_and_block_layout():
    torch.manual_seed(0)
    out = torch.randn(5, 3 * 4, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    A = torch.randn(2 * 3, 6, dtype=torch.float64, requires_grad=True)
    B = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    enable = (True, False, True)
    assert torch.autograd.gradcheck(
        lambda o, x_, a, b: BranchUpdate.apply(o, x_, a, b, 0.0, 1.5, enable), (out, x, A, B)
    )
    full = block_diagonal_B(B, enable)  # (3·4, 2·3): q rows read cols 0:3, k rows zero, v 3:6
    assert full.shape == (12, 6)
    torch.testing.assert_close(full[0:4, 0:3], B[0])
    torch.testing.assert_close(full[8:12, 3:6], B[1])
    assert torch.count_nonzero(full[4:8]) == 0 and torch.count_nonzero(full[0:4, 3:]) == 0
    # scaling and cast in the same kernel; uneven slices (no single strided view) take a loop
    scaled = block_diagonal_B(B, enable, 2.0, torch.float32)
    assert scaled.dtype == torch.float32 and torch.equal(scaled, (2 * full).float())
    B4 = torch.randn(3, 2, 5, dtype=torch.float64)
    uneven = (True, True, False, True)  # slices 0, 1, 3: not evenly spaced
    assert diagonal_blocks(torch.zeros(8, 15), uneven, 5) is None
    full4 = block_diagonal_B(B4, uneven)
    for j, i in enumerate((0, 1, 3)):
        assert torch.equal(full4[2 * i : 2 * i + 2, 5 * j : 5 * j + 5], B4[j])
    assert torch.count_nonzero(full4[4:6]) == 0
    out4 = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    x4 = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    A4 = torch.randn(15, 6, dtype=torch.float64, requires_grad=True)
    B4.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda o, x_, a, b: BranchUpdate.apply(o, x_, a, b, 0.0, 0.5, uneven), (out4, x4, A4, B4)
    )


def test_double_backward_is_refused_on_the_fast_path_and_works_on_the_formula():
    layer = _fused((True, True, True), fast=True)
    x = torch.randn(3, 12, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(layer(x).sum(), x, create_graph=True)
    (g,) = torch.autograd.grad(layer(x).sum(), x)  # first order is fine
    assert g.shape == x.shape
    layer.fast_path = False  # plain ops: autograd differentiates twice
    (g2,) = torch.autograd.grad(layer(x).square().sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g2.sum(), x)
    assert gg.shape == x.shape and torch.isfinite(gg).all()


@pytest.mark.parametrize("fast", [False, True])
def test_bf16_autocast_matches_reference_within_bf16_rounding(fast):
    torch.manual_seed(0)
    layer = FusedLoRALinear(Conv1D(3 * 16, 32), r=4, alpha=8, enable=(True, False, True))
    _randomise(layer)
    layer.fast_path = fast
    x = torch.randn(2, 7, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_new, g_new = _grads(layer, layer, x, seed=0)
        y_ref, g_ref = _grads(layer, lambda t: _reference(layer, t), x, seed=0)
    assert y_new.dtype == torch.bfloat16 and layer.lora_A.dtype == torch.float32
    torch.testing.assert_close(y_new.float(), y_ref.float(), rtol=2e-2, atol=2e-2)
    for a, b in zip(g_new, g_ref):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a.float(), b.float(), rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("fast", [False, True])
def test_merge_unmerge_exact_on_both_paths(fast):
    layer = _fused((True, False, True), dropout=0.1, fast=fast).eval()
    x = torch.randn(3, 12, dtype=torch.float64)
    before = layer(x)
    layer.merge()  # merge adds ΔW in fp32 (layers.LoRALinear._apply_delta): fp32 tolerance
    torch.testing.assert_close(layer(x), before, rtol=1e-5, atol=1e-5)
    layer.unmerge()
    torch.testing.assert_close(layer(x), before, rtol=1e-5, atol=1e-5)


# --- cast_frozen_ -----------------------------------------------------------------------------


def _lora_gpt2(targets=("q", "v"), fast=False):
    model = make_tiny_gpt2()
    lorakit.apply_lora(model, LoRAConfig(r=2, alpha=4, targets=list(targets), dropout=0.0))
    for layer in model.modules():
        if isinstance(layer, FusedLoRALinear):
            _randomise(layer)
    set_fast_path(model, fast)
    return model.train()


def _loss_and_grads(model, ids):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(ids, labels=ids).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


@pytest.mark.parametrize("fast", [False, True])
def test_cast_frozen_is_exact_under_autocast_and_casts_only_frozen_matmul_weights(fast):
    model = _lora_gpt2(fast=fast)
    cast = copy.deepcopy(model)
    names = cast_frozen_(cast, torch.bfloat16)
    assert "transformer.h.0.attn.c_attn.base.weight" in names
    assert "transformer.h.0.mlp.c_fc.bias" in names
    params = dict(cast.named_parameters())
    assert params["transformer.h.0.attn.c_attn.base.weight"].dtype == torch.bfloat16
    assert params["transformer.h.0.attn.c_attn.lora_A"].dtype == torch.float32  # trainable
    assert params["transformer.wte.weight"].dtype == torch.float32  # tied to the LM head
    assert params["transformer.h.0.ln_1.weight"].dtype == torch.float32  # not a matmul
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(0))
    loss_a, grads_a = _loss_and_grads(model, ids)
    loss_b, grads_b = _loss_and_grads(cast, ids)
    assert torch.equal(loss_a, loss_b)  # autocast rounded these weights to bf16 anyway
    assert grads_a.keys() == grads_b.keys() and len(grads_a) == 4  # A, B of 2 layers
    for name in grads_a:
        assert torch.equal(grads_a[name], grads_b[name]), name


def test_cast_frozen_then_merge_stays_close():
    model = _lora_gpt2().eval()
    cast_frozen_(model)
    ids = torch.randint(0, 300, (1, 10), generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        before = model(ids).logits.float()
        lorakit.merge_lora(model)
        after = model(ids).logits.float()
    torch.testing.assert_close(after, before, rtol=5e-2, atol=5e-2)


def test_cast_frozen_errors_leave_the_model_untouched():
    model = make_tiny_gpt2()  # nothing frozen: full fine-tuning
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match="no frozen weight"):
        cast_frozen_(model)
    with pytest.raises(TypeError, match="floating-point"):
        cast_frozen_(_lora_gpt2(), torch.int8)
    with pytest.raises(TypeError, match="floating-point"):
        cast_frozen_(_lora_gpt2(), "bf16")
    assert {n: p.dtype for n, p in model.named_parameters()} == dtypes
    assert frozen_matmul_weights(model) == {}


@pytest.mark.parametrize("fan_in_fan_out", [True, False])
def test_stacked_matmul_gradcheck_with_every_input_trainable(fan_in_fan_out):
    torch.manual_seed(0)
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn((6, 12) if fan_in_fan_out else (12, 6), dtype=torch.float64, requires_grad=True)
    b = torch.randn(12, dtype=torch.float64, requires_grad=True)
    A = torch.randn(2 * 3, 6, dtype=torch.float64, requires_grad=True)
    B = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    enable = (True, False, True)
    assert torch.autograd.gradcheck(
        lambda *t: StackedMatmul.apply(*t, 0.0, 1.5, enable, fan_in_fan_out), (x, w, b, A, B)
    )
    # the same as the base matmul plus BranchUpdate
    base = x @ (w if fan_in_fan_out else w.T) + b
    torch.testing.assert_close(
        StackedMatmul.apply(x, w, b, A, B, 0.0, 1.5, enable, fan_in_fan_out),
        BranchUpdate.apply(base, x, A, B, 0.0, 1.5, enable),
    )


@pytest.mark.parametrize("fast", [False, True])
def test_a_hooked_or_subclassed_base_keeps_its_own_forward(fast):
    class Scaled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    torch.manual_seed(0)
    for base in (Scaled(6, 4), nn.Linear(6, 4)):
        calls = []
        if type(base) is nn.Linear:
            base.register_forward_hook(lambda m, i, o, calls=calls: calls.append(1))
        layer = LoRALinear(base.double(), r=2)
        layer.fast_path = fast
        x = torch.randn(3, 6, dtype=torch.float64)
        torch.testing.assert_close(layer(x), base(x))  # B = 0: exactly the (hooked) base
        if type(base) is nn.Linear:
            assert len(calls) == 2  # the hook ran inside the LoRA layer too


@pytest.mark.parametrize("conv", [True, False])
def test_inference_path_equals_training_path(conv):
    """Without autograd (evaluation, generation) the fast path uses BranchUpdate, not
    StackedMatmul."""
    layer = _fused((True, False, True), conv=conv, fast=True).eval()
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    with_grad = layer(x)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), with_grad, rtol=1e-12, atol=1e-12)


# --- the switch --------------------------------------------------------------------------------


def _path_of(layer, x):
    """Which computation made the output: the formula's last op is an add (``addmm`` in the fused
    q,v layer, which adds its branch inside the second matmul), the fused path's is one of its
    Functions (then a reshape back to ``x``'s leading shape)."""
    fn = layer(x).grad_fn
    if type(fn).__name__ == "ViewBackward0":
        fn = fn.next_functions[0][0]
    return type(fn).__name__


def test_layers_compute_the_formula_by_default_and_the_fused_path_when_switched_on():
    model = _lora_gpt2(targets=("q", "v", "o"))
    layers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    assert len(layers) == 4 and not any(m.fast_path for m in layers)  # 2 blocks × (c_attn, o)
    x = torch.randn(2, 3, 32, requires_grad=True)
    assert _path_of(layers[0], x) == "AddmmBackward0"  # the fused q,v layer on c_attn
    assert _path_of(layers[1], x) == "AddBackward0"  # c_proj: the plain formula
    assert set_fast_path(model, True) == 4 and all(m.fast_path for m in layers)
    assert _path_of(layers[0], x) == "StackedMatmulBackward"
    assert "fast_path=True" in repr(layers[0])
    assert set_fast_path(model, False) == 4 and _path_of(layers[0], x) == "AddmmBackward0"
    assert "fast_path" not in repr(layers[0])


def test_fast_path_context_restores_each_layer_and_embeddings_are_not_counted():
    model = _lora_gpt2(targets=("q", "v", "o", "re:transformer\\.wpe$"))
    assert sum(isinstance(m, lorakit.LoRAEmbedding) for m in model.modules()) == 1
    layers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    layers[1].fast_path = True  # a mix: the context must give each layer its own value back
    with fast_path(model) as n:
        assert n == 4 and all(m.fast_path for m in layers)
    assert [m.fast_path for m in layers] == [False, True, False, False]
    with pytest.raises(RuntimeError, match="inside"), fast_path(model, False):
        assert not any(m.fast_path for m in layers)
        raise RuntimeError("inside")
    assert [m.fast_path for m in layers] == [False, True, False, False]  # restored on errors too
    assert set_fast_path(nn.Linear(3, 3)) == 0  # no LoRA layer: nothing to set
    with pytest.raises(TypeError, match="True or False"):
        set_fast_path(model, "auto")
