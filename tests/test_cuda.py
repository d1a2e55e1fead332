"""GPU-only checks of the fast paths (skipped without CUDA; run on the GPU machine).

The CPU tests check the same functions in fp32/fp64; here they run in bf16 on the GPU: both paths
of the LoRA layer (the formula and the fused ``fast_path``), and the padded LM head at GPT-2's
real vocabulary size.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers.pytorch_utils import Conv1D

from lorakit import FusedLoRALinear
from lorakit.train import linear_cross_entropy

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_padded_head_loss_matches_autograd_at_gpt2_vocab(smoothing):
    g = torch.Generator("cuda").manual_seed(0)
    h = torch.randn(3000, 256, device="cuda", generator=g, requires_grad=True)
    w = (0.05 * torch.randn(50257, 256, device="cuda", generator=g)).requires_grad_(True)
    t = torch.randint(0, 50257, (3000,), device="cuda", generator=g)
    t[:5] = 50256  # the last real word, next to the padding
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = linear_cross_entropy(h, w, t, smoothing)
        ref = F.cross_entropy(F.linear(h, w).float(), t, label_smoothing=smoothing)
    loss.backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-4, atol=1e-4)
    for ours, theirs in ((gh, h.grad), (gw, w.grad)):
        err = (ours - theirs).norm() / theirs.norm()
        assert err < 1e-2, err  # bf16 matmuls on both sides


@pytest.mark.parametrize("fast", [False, True], ids=["formula", "fast_path"])
def test_fused_lora_bf16_matches_fp32_reference(fast):
    torch.manual_seed(0)
    layer = FusedLoRALinear(
        Conv1D(3 * 256, 256), r=4, alpha=32, dropout=0.0, enable=(True, False, True)
    ).cuda()
    layer.fast_path = fast
    with torch.no_grad():
        layer.lora_B.normal_(0, 0.02)
    x = torch.randn(4, 128, 256, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = layer(x)
    y.float().square().mean().backward()
    got = [t.grad.clone() for t in (x, layer.lora_A, layer.lora_B)]
    for t in (x, layer.lora_A, layer.lora_B):
        t.grad = None
    ref = layer.base(x) + x @ layer.delta_weight().T
    torch.testing.assert_close(y.float(), ref, rtol=2e-2, atol=2e-2)
    ref.square().mean().backward()
    for ours, t in zip(got, (x, layer.lora_A, layer.lora_B)):
        assert (ours - t.grad).norm() / t.grad.norm() < 2e-2
