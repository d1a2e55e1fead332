"""lorakit.lora.fast.kernels: the Triton dropout kernels of the LoRA branch against PyTorch.

Run on a GPU with Triton, or on a CPU with Triton installed and ``TRITON_INTERPRET=1``; skipped
otherwise (CI's CPU install has no Triton, and the fused path then uses PyTorch ops, tested
elsewhere). The layers here run on the fused path (``fast_path``), where the kernels live.
"""

from __future__ import annotations

import os

import pytest
import torch
from transformers.pytorch_utils import Conv1D

from lorakit import FusedLoRALinear, LoRALinear
from lorakit.lora.fast import kernels
from lorakit.lora.fast.blocks import padded_rank

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.skipif(
    kernels.triton is None or not (DEVICE == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"),
    reason="needs Triton on a GPU (or TRITON_INTERPRET=1 on the CPU)",
)
HALF = torch.bfloat16 if DEVICE == "cuda" else torch.float16  # the interpreter has no bf16


def _rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _seed(value):
    return torch.tensor([value], dtype=torch.int64, device=DEVICE)


@pytest.fixture(autouse=True)
def _always():
    """The kernels on for eager calls too (by default they run only inside graph capture)."""
    old = kernels.set_mode("always")
    yield
    kernels.set_mode(old)


def test_usable_only_for_half_precision_inputs_of_supported_width():
    x = torch.zeros(4, 8, dtype=HALF, device=DEVICE)
    assert kernels.usable(x, 16)
    assert not kernels.usable(x.float(), 16)  # fp32 training keeps PyTorch ops
    assert not kernels.usable(x, kernels.MAX_RANK + 8)
    assert not kernels.usable(x.T, 16)  # needs unit column stride
    kernels.set_mode("never")
    assert not kernels.usable(x, 16)
    kernels.set_mode("graph")  # eager call, no capture: PyTorch ops
    assert not kernels.usable(x, 16)


def test_mode_from_the_environment_and_clear_errors(monkeypatch):
    kernels.set_mode(None)
    for env, want in (("0", "never"), ("1", "always"), ("graph", "graph"), (" Always ", "always")):
        monkeypatch.setenv("LORAKIT_TRITON", env)
        assert kernels.mode() == want
    monkeypatch.delenv("LORAKIT_TRITON")
    assert kernels.mode() == "graph"
    monkeypatch.setenv("LORAKIT_TRITON", "yes")
    with pytest.raises(ValueError, match="LORAKIT_TRITON='yes'.*0 \\(never\\)"):
        kernels.mode()
    with pytest.raises(ValueError, match="mode must be one of"):
        kernels.set_mode("sometimes")
    assert kernels.set_mode("never") is None and kernels.mode() == "never"


@pytest.mark.skipif(DEVICE != "cuda", reason="CUDA graphs need a CUDA GPU")
def test_default_mode_uses_the_kernels_only_inside_graph_capture(monkeypatch):
    kernels.set_mode("graph")
    calls = []
    real = kernels.dropout_and_copy
    monkeypatch.setattr(kernels, "dropout_and_copy", lambda *a: calls.append(1) or real(*a))
    layer = FusedLoRALinear(Conv1D(3 * 64, 64), r=4, dropout=0.1).cuda().train()
    layer.fast_path = True
    x = torch.randn(32, 64, device="cuda", dtype=torch.bfloat16)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        layer(x).sum().backward()  # eager warm-up: PyTorch ops
    torch.cuda.current_stream().wait_stream(stream)
    assert calls == []
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        layer(x).sum().backward()
    assert calls == [1]
    graph.replay()
    torch.cuda.synchronize()
    assert torch.isfinite(layer.lora_A.grad).all()


def test_keep_decisions_have_the_rate_repeat_per_seed_and_differ_across_seeds():
    m1 = kernels.keep_mask(_seed(7), 96, 200, 0.25)
    assert m1.shape == (96, 200) and m1.dtype == torch.bool
    assert abs(m1.float().mean().item() - 0.75) < 0.02
    assert torch.equal(kernels.keep_mask(_seed(7), 96, 200, 0.25), m1)
    assert not torch.equal(kernels.keep_mask(_seed(8), 96, 200, 0.25), m1)
    # no structure along rows or columns: every row and column keeps about 3/4
    assert m1.float().mean(1).min() > 0.55 and m1.float().mean(0).min() > 0.45


def test_dropout_and_copy_writes_x_into_the_stack_and_the_dropped_input():
    n, k, width, p = 37, 530, 16, 0.3  # ragged tiles on both axes
    x = torch.randn(n, k, device=DEVICE).to(HALF)
    xh = torch.full((n, k + width), 5.0, device=DEVICE, dtype=HALF)
    xd = kernels.dropout_and_copy(x, xh, p, _seed(3))
    assert torch.equal(xh[:, :k], x)
    assert torch.equal(xh[:, k:], torch.full((n, width), 5.0, device=DEVICE, dtype=HALF))
    keep = kernels.keep_mask(_seed(3), n, k, p)
    scale = kernels.threshold(p)[1]
    assert torch.equal(xd, (x.float() * keep * scale).to(HALF))


def test_threshold_rounds_p_to_16_bits_and_keeps_the_output_unbiased():
    assert kernels.threshold(0.1) == (6554, 65536 / (65536 - 6554))
    t, scale = kernels.threshold(0.5)
    assert t == 32768 and scale == 2.0
    assert kernels.threshold(1e-9) == (0, 1.0)  # nothing is dropped, nothing rescaled


@pytest.mark.parametrize("width", [8, 16, 24])
@pytest.mark.parametrize("n", [70, 300])  # one row chunk, several (the last one ragged)
def test_branch_grads_add_the_masked_product_and_sum_A_s_gradient(width, n):
    g = torch.Generator(DEVICE).manual_seed(0)
    k, p = 200, 0.2
    big = torch.randn(n, k + 9, generator=g, device=DEVICE).to(HALF)
    gx = big[:, 3 : 3 + k]  # a strided view (as a part of [g W | gh]): only read
    before = big.clone()
    gh = torch.randn(n, width, generator=g, device=DEVICE).to(HALF)
    A = (torch.randn(width, k, generator=g, device=DEVICE) / 4).to(HALF)
    x = torch.randn(n, k, generator=g, device=DEVICE).to(HALF)
    xd = kernels.dropout_and_copy(x, torch.empty_like(x), p, _seed(11))
    out, gA = kernels.branch_grads(gx, gh, A, p, _seed(11), xd)
    assert torch.equal(big, before) and out.is_contiguous() and out.dtype == HALF
    keep = kernels.keep_mask(_seed(11), n, k, p)
    ref = gx.double() + (gh.double() @ A.double()) * keep * kernels.threshold(p)[1]
    assert _rel(out, ref) < 5e-3
    assert gA.dtype == torch.float32 and gA.shape == (width, k)
    assert _rel(gA, gh.double().T @ xd.double()) < 1e-3
    out2, none = kernels.branch_grads(gx, gh, A, p, _seed(11))
    assert none is None and torch.equal(out2, out)
    with pytest.raises(ValueError, match="do not fit"):
        kernels.branch_grads(gx, gh, A[:, :-1], p, _seed(11))
    with pytest.raises(ValueError, match="contiguous"):
        kernels.branch_grads(gx, gh, A, p, _seed(11), xd.T)


@pytest.mark.parametrize("layer_kind", ["fused_qv", "fused_qkv", "plain"])
def test_layer_on_the_kernel_path_matches_the_formula_with_the_same_decisions(layer_kind):
    torch.manual_seed(0)
    k, d_s = 64, 48
    if layer_kind == "plain":
        layer = LoRALinear(torch.nn.Linear(k, 80), r=4, alpha=8, dropout=0.2)
    else:
        enable = (True, False, True) if layer_kind == "fused_qv" else (True, True, True)
        layer = FusedLoRALinear(Conv1D(3 * d_s, k), r=4, alpha=8, dropout=0.2, enable=enable)
    layer = layer.to(DEVICE).train()
    layer.fast_path = True
    with torch.no_grad():
        layer.lora_B.normal_(0, 0.05)
        layer.base.weight.copy_(layer.base.weight.to(HALF).float())  # exact in half precision
    x = torch.randn(40, k, device=DEVICE).to(HALF).requires_grad_(True)
    assert kernels.usable(x.detach(), padded_rank(layer.lora_A.shape[0]))
    torch.manual_seed(3)
    y = layer(x)
    torch.manual_seed(3)  # the layer's first draw is the kernels' seed
    keep = kernels.keep_mask(kernels.new_seed(x.device), 40, k, 0.2)
    x64 = x.detach().double().requires_grad_(True)
    A, B = (t.detach().double().requires_grad_(True) for t in (layer.lora_A, layer.lora_B))
    if layer_kind == "plain":
        delta = B @ A
    else:
        delta = torch.zeros(3, d_s, k, dtype=torch.float64, device=DEVICE)
        for j, i in enumerate(layer.enabled_idx):
            delta = delta.index_put(
                (torch.tensor([i], device=DEVICE),), (B[j] @ A[j * 4 : (j + 1) * 4])[None]
            )
        delta = delta.reshape(3 * d_s, k)
    base = layer.base.double()
    ref = base(x64) + (x64 * keep / 0.8) @ (layer.scaling * delta).T
    assert _rel(y, ref) < 1e-2
    w = torch.randn(ref.shape, device=DEVICE, dtype=torch.float64)
    (y.double() * w).sum().backward()
    (ref * w).sum().backward()
    for ours, theirs in (
        (x.grad, x64.grad),
        (layer.lora_A.grad, A.grad),
        (layer.lora_B.grad, B.grad),
    ):
        assert _rel(ours, theirs) < 1e-2


def test_kernel_path_and_pytorch_path_are_both_unbiased():
    torch.manual_seed(0)
    layer = (
        FusedLoRALinear(Conv1D(3 * 32, 64), r=4, alpha=8, dropout=0.25, enable=(True, True, True))
        .to(DEVICE)
        .train()
    )
    layer.fast_path = True
    with torch.no_grad():
        layer.lora_B.normal_(0, 0.05)
    x = torch.randn(256, 64, device=DEVICE).to(HALF)
    layer.eval()  # no dropout: the expected value of the training output
    ref = layer(x)
    layer.train()
    kernels.set_mode("never")
    torch.manual_seed(1)
    torch_path = torch.stack([layer(x).detach().float() for _ in range(64)]).mean(0)
    kernels.set_mode("always")
    torch.manual_seed(1)
    kernel_path = torch.stack([layer(x).detach().float() for _ in range(64)]).mean(0)
    # both are unbiased estimates of the eval output, with the same spread
    branch = (ref.float() - layer.base(x.float())).abs().mean()
    assert (kernel_path - ref.float()).abs().mean() < 0.3 * branch
    assert (torch_path - ref.float()).abs().mean() < 0.3 * branch


def test_the_default_formula_path_never_launches_the_kernels(monkeypatch):
    calls = []
    real = kernels.dropout_and_copy
    monkeypatch.setattr(kernels, "dropout_and_copy", lambda *a: calls.append(1) or real(*a))
    layer = FusedLoRALinear(Conv1D(3 * 32, 64), r=4, dropout=0.1).to(DEVICE, HALF).train()
    x = torch.randn(16, 64, device=DEVICE).to(HALF).requires_grad_(True)
    layer(x).float().sum().backward()  # mode "always" (fixture), but fast_path is off
    assert calls == []
    layer.fast_path = True
    layer(x).float().sum().backward()
    assert calls == [1]
