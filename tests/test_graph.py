"""lorakit.train.graph.CUDAGraphStep: clear errors everywhere; on a GPU, the same training as
eager.
"""

from __future__ import annotations

import pytest
import torch

import lorakit
from lorakit.models.gpt2 import build_gpt2
from lorakit.train import causal_lm_loss, label_positions
from lorakit.train.graph import CUDAGraphStep

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")


def _setup(device: str, lora_dropout: float = 0.0, lr: float = 1e-2, seed: int = 0):
    model = build_gpt2(
        n_layer=2,
        n_embd=64,
        n_head=2,
        n_positions=32,
        vocab_size=97,
        dropout=0.0,
        seed=seed,
        device=torch.device(device),
    ).train()
    lorakit.apply_lora(
        model, lorakit.LoRAConfig(targets=["q", "v"], r=4, alpha=8, dropout=lora_dropout)
    )
    with torch.no_grad():  # B = 0 at the start; make the branch matter from step one
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(0, 0.02, generator=torch.Generator(device).manual_seed(1))
    ids = torch.randint(0, 97, (2, 16), generator=torch.Generator().manual_seed(2))
    positions = label_positions(ids).to(device)
    batch = {"input_ids": ids.to(device)}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, capturable=device == "cuda")

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss, _ = causal_lm_loss(model, batch, 0.1, positions=positions)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss.detach()

    return model, opt, step


def test_capturable_false_is_refused_with_the_fix():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([p], capturable=False)
    with pytest.raises(ValueError, match="capturable=True"):
        CUDAGraphStep(lambda: p.sum(), opt)


def test_cpu_parameters_and_bad_warmup_are_refused():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([p], lr=0.1)
    with pytest.raises(ValueError, match="Move the model to the GPU"):
        CUDAGraphStep(lambda: p.sum(), opt)
    with pytest.raises(ValueError, match="warmup must be >= 1"):
        CUDAGraphStep(lambda: p.sum(), opt, warmup=0)
    assert p.grad is None  # nothing ran


@cuda
def test_graphed_steps_train_exactly_like_eager_steps():
    model_e, opt_e, step_e = _setup("cuda")
    model_g, opt_g, step_g = _setup("cuda")
    eager = []
    for _ in range(3 + 4):  # the graph's 3 warm-up steps, then 4 replays
        opt_e.zero_grad(set_to_none=True)
        eager.append(float(step_e()))
    graphed = CUDAGraphStep(step_g, opt_g, warmup=3)
    replayed = [float(graphed()) for _ in range(4)]
    assert replayed == pytest.approx(eager[3:], rel=1e-5)
    assert replayed[-1] < replayed[0]  # it trains
    for (n, pe), pg in zip(model_e.named_parameters(), model_g.parameters()):
        torch.testing.assert_close(pg, pe, rtol=1e-5, atol=1e-6, msg=n)
    assert graphed.replays == 4


@cuda
def test_dropout_draws_fresh_masks_on_every_replay():
    _, opt, step = _setup("cuda", lora_dropout=0.5, lr=0.0)  # lr 0: the weights never move
    graphed = CUDAGraphStep(step, opt, warmup=1)
    losses = {float(graphed()) for _ in range(4)}
    assert len(losses) == 4  # the same weights and batch: only the dropout masks differ
