"""lorakit.lora.fused: the Triton kernels of the LoRA branch against PyTorch references.

Run on a GPU with Triton, or on a CPU with ``TRITON_INTERPRET=1`` and Triton installed; skipped
otherwise (CI's CPU install has no Triton, and the layers then use PyTorch ops).
"""

from __future__ import annotations

import os

import pytest
import torch
from transformers.pytorch_utils import Conv1D

from lorakit import FusedLoRALinear
from lorakit.lora import fused

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.skipif(
    fused.triton is None or not (DEVICE == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"),
    reason="needs Triton on a GPU (or TRITON_INTERPRET=1)")
BF16 = torch.bfloat16 if DEVICE == "cuda" else torch.float16  # the interpreter has no bf16


def _rel(a, b):
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def _seed(value):
    return torch.tensor([value], dtype=torch.int64, device=DEVICE)


def test_mask_rate_repeatability_and_fresh_seeds():
    m1 = fused.keep_mask(_seed(7), 96, 200, 0.25)
    assert m1.shape == (96, 200)
    assert abs(m1.float().mean().item() - 0.75) < 0.03
    assert torch.equal(fused.keep_mask(_seed(7), 96, 200, 0.25), m1)
    assert not torch.equal(fused.keep_mask(_seed(8), 96, 200, 0.25), m1)


@pytest.mark.parametrize("p", [0.0, 0.3])
def test_forward_and_backward_kernels_match_references(p):
    g = torch.Generator(DEVICE).manual_seed(0)
    n, k, R, width = 100, 136, 12, 16  # ragged blocks on both axes
    x = torch.randn(n, k, generator=g, device=DEVICE).to(BF16)
    A = torch.randn(R, k, generator=g, device=DEVICE) / k**0.5
    xh, seed = fused.branch_forward(x, A, p, width)
    assert torch.equal(xh[:, :k], x) and (seed is None) == (p == 0)
    keep = fused.keep_mask(seed, n, k, p) if p else torch.ones(n, k, dtype=torch.bool,
                                                                device=DEVICE)
    xd = (x.float() * keep / (1 - p)).to(BF16)
    h_ref = xd.float() @ A.to(BF16).float().T
    assert _rel(xh[:, k:k + R], h_ref) < 1e-2
    assert torch.count_nonzero(xh[:, k + R:]) == 0  # the padding of h is exactly zero
    gh = torch.randn(n, width, generator=g, device=DEVICE).to(BF16)
    gh[:, R:] = 0
    gx, gA = fused.branch_backward(xh, gh, A, seed, p, need_gx=True)
    gx_ref = (gh[:, :R].float() @ A.to(BF16).float()) * keep / (1 - p)
    assert _rel(gx, gx_ref) < 1e-2
    assert gA.dtype == A.dtype and gA.shape == A.shape
    assert _rel(gA, gh[:, :R].float().T @ xd.float()) < 1e-2
    none, gA2 = fused.branch_backward(xh, gh, A, seed, p, need_gx=False)
    assert none is None and torch.allclose(gA2, gA)


def test_layer_on_the_fused_path_matches_the_formula_with_the_same_mask():
    torch.manual_seed(0)
    layer = FusedLoRALinear(Conv1D(3 * 64, 64), r=4, alpha=8, dropout=0.2,
                            enable=(True, False, True)).to(DEVICE).train()
    with torch.no_grad():
        layer.lora_B.normal_(0, 0.05)
    x = torch.randn(40, 64, device=DEVICE).to(BF16).requires_grad_(True)
    assert fused.usable(x.detach())
    torch.manual_seed(3)
    y = layer(x)
    torch.manual_seed(3)  # the layer's first draw is the kernel's seed
    seed = torch.randint(0, 2**31 - 1, (1,), device=DEVICE, dtype=torch.int64)
    keep = fused.keep_mask(seed, 40, 64, 0.2)
    x32 = x.detach().float().requires_grad_(True)
    A, B = (t.detach().float().requires_grad_(True) for t in (layer.lora_A, layer.lora_B))
    delta = torch.zeros(3 * 64, 64, device=DEVICE)
    delta = delta.index_put((torch.arange(0, 64, device=DEVICE),), B[0] @ A[:4])
    delta = delta.index_put((torch.arange(128, 192, device=DEVICE),), B[1] @ A[4:])
    ref = layer.base(x32) + (x32 * keep / 0.8) @ (layer.scaling * delta).T
    assert _rel(y, ref) < 2e-2
    w = torch.randn(ref.shape, device=DEVICE)
    (y.float() * w).sum().backward()
    (ref * w).sum().backward()
    assert _rel(x.grad, x32.grad) < 2e-2
    assert _rel(layer.lora_A.grad, A.grad) < 2e-2
    assert _rel(layer.lora_B.grad, B.grad) < 2e-2
