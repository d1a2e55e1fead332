"""``torch.compile`` on a lorakit-adapted model: one graph, no recompiles, the same loss as eager.

The compiler backend is ``aot_eager`` (dynamo traces the model and AOTAutograd its backward, run
eagerly: no C++ or Triton code generation, so the test is quick on a CPU). A counting backend
counts compilations; train mode with dropout on, no autocast, forward + backward + AdamW steps.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend

import lorakit
from lorakit.lora.fast import set_fast_path

STEPS = 3


def _gpt2_qv(fast: bool = False) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=128, n_positions=64)
    model = GPT2LMHeadModel(config)  # dropout 0.1 in every block, kept on
    lorakit.apply_lora(model, lorakit.LoRAConfig(targets=["q", "v"], r=4, alpha=8, dropout=0.1))
    with torch.no_grad():  # B = 0 at the start; make the branch matter from step one
        for layer in model.modules():
            if isinstance(layer, lorakit.LoRALinear):
                layer.lora_B.normal_(0, 0.02)
    set_fast_path(model, fast)
    return model.train()


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4))
    lorakit.apply_lora(model, lorakit.LoRAConfig(targets=["0", "2"], r=2, dropout=0.2))
    return model.train()


def _train(model: nn.Module, run, batches) -> list[float]:
    """``STEPS`` AdamW steps of ``run(model, batch) -> loss``; the RNG seeded per step, so eager
    and compiled runs draw the same dropout masks."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for step, batch in enumerate(batches):
        torch.manual_seed(100 + step)
        loss = run(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def _lm_loss(model, ids):
    logits = model(ids).logits
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())


def _compiled_vs_eager(make, loss_fn, batches):
    """(compilations, compiled losses, eager losses) for two equal models."""
    eager = _train(make(), loss_fn, batches)
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    model = make()
    compiled = torch.compile(model, backend=counter)
    losses = _train(model, lambda _, batch: loss_fn(compiled, batch), batches)
    return counter.frame_count, losses, eager


@pytest.mark.parametrize("fast", [False, True], ids=["formula", "fast_path"])
def test_compiled_gpt2_with_lora_qv_compiles_once_and_trains_like_eager(fast):
    ids = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(1))
    frames, compiled, eager = _compiled_vs_eager(lambda: _gpt2_qv(fast), _lm_loss, [ids] * STEPS)
    # one graph either way: with fast_path on the compiler is given the formula too (traced
    # through the fused Functions, this model compiled 19 times: each Function broke the graph,
    # and each frame resumed after a break recompiled for every layer)
    assert frames <= 2, f"{frames} compilations for one input shape"
    assert compiled == pytest.approx(eager, rel=1e-5)
    assert compiled[-1] != compiled[0]  # it trains (the weights moved)


def test_compiled_mlp_with_lora_is_one_graph():
    g = torch.Generator().manual_seed(2)
    batches = [
        (torch.randn(8, 16, generator=g), torch.randint(0, 4, (8,), generator=g))
        for _ in range(STEPS)
    ]
    frames, compiled, eager = _compiled_vs_eager(
        _mlp, lambda m, b: F.cross_entropy(m(b[0]), b[1]), batches
    )
    assert frames == 1
    assert compiled == pytest.approx(eager, rel=1e-5)
