"""What keeps a training step fast, checked for correctness on CPU (benchmarks measure speed).

* no host sync added by the loss (transformers' own attention-mask checks in the backbone read
  one scalar per forward; they are outside lorakit and vanish under ``torch.compile``): on a
  GPU, ``.item()``/``int()``/``bool()`` of a device tensor, a ``nonzero`` or boolean-mask
  indexing make the host wait for the device every step. On CPU the same calls show up as the
  aten ops below, so a dispatch mode can catch them;
* an all-ones attention mask is not passed to the model;
* ``TrainConfig.cast_frozen``: frozen weights stored in bf16 give bit-identical training under
  bf16 autocast.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import lorakit
import lorakit.train.loop as loop
from lorakit.lora.precision import frozen_matmul_weights
from lorakit.train import TrainConfig, causal_lm_loss, evaluate_loss, label_positions, train

SYNCING_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "is_nonzero"}


class _SyncDetector(TorchDispatchMode):
    """Records the aten ops that would wait for the device on a GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNCING_OPS:
            self.seen.append(name)
        if name == "index" and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None
        ):
            self.seen.append("index(bool mask)")
        return func(*args, **(kwargs or {}))


def _batches(n=4, b=3, t=12, seed=0, pad=True):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(10, 60, (b, t), generator=g)
        mask = torch.ones_like(ids)
        if pad:
            mask[0, -4:] = 0
        labels = ids.clone()
        labels[:, :3] = -100
        labels[mask == 0] = -100
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


def test_label_positions_match_the_boolean_mask():
    batch = _batches(1)[0]
    pos = label_positions(batch["labels"])
    keep = batch["labels"][:, 1:] != -100
    assert pos.n == int(keep.sum()) and isinstance(pos.n, int)
    hidden = torch.randn(3, 12, 5)
    torch.testing.assert_close(
        hidden.flatten(0, 1).index_select(0, pos.rows), hidden[:, :-1][keep], rtol=0, atol=0
    )
    assert torch.equal(pos.target, batch["labels"][:, 1:][keep])
    with pytest.raises(ValueError, match="no label"):
        label_positions(torch.full((2, 5), -100))
    with pytest.raises(ValueError, match="batch, seq"):
        label_positions(torch.zeros(5, dtype=torch.long))


def _backbone_syncs(model, batch) -> list[str]:
    """What transformers' own forward does (its attention-mask checks read one scalar)."""
    with torch.no_grad(), _SyncDetector() as spy:
        model.base_model(
            input_ids=batch["input_ids"],
            attention_mask=batch.get("attention_mask"),
            use_cache=False,
        )
    return spy.seen


@pytest.mark.parametrize("pad", [True, False])
def test_loss_with_precomputed_positions_adds_no_host_sync(tiny_gpt2, pad):
    batch, positions, _ = loop._prepare(_batches(1, pad=pad)[0], torch.device("cpu"))
    assert ("attention_mask" in batch) == pad
    reference, _ = causal_lm_loss(tiny_gpt2, batch)
    with _SyncDetector() as spy:
        loss, n = causal_lm_loss(tiny_gpt2, batch, 0.1, positions=positions)
        loss.backward()
    assert spy.seen == _backbone_syncs(tiny_gpt2, batch), spy.seen  # none from the loss itself
    torch.testing.assert_close(
        causal_lm_loss(tiny_gpt2, batch, positions=positions)[0], reference, rtol=0, atol=0
    )
    with _SyncDetector() as spy:  # the detector can fail: finding positions on the device syncs
        causal_lm_loss(tiny_gpt2, batch)
    assert "nonzero" in spy.seen


def test_train_loop_passes_positions_and_drops_all_ones_mask(tiny_gpt2, monkeypatch):
    calls = []
    original = loop.causal_lm_loss

    def spying_loss(model, batch, label_smoothing=0.0, backbone=None, positions=None):
        calls.append(("attention_mask" in batch, positions is not None))
        expected = _backbone_syncs(model, batch)
        with _SyncDetector() as spy:
            out = original(model, batch, label_smoothing, backbone, positions)
        assert spy.seen == expected, spy.seen
        return out

    monkeypatch.setattr(loop, "causal_lm_loss", spying_loss)
    padded, full = _batches(2, pad=True), _batches(2, seed=1, pad=False)
    result = train(tiny_gpt2, padded + full, TrainConfig(progress=False), device="cpu")
    assert calls == [(True, True), (True, True), (False, True), (False, True)]
    assert result.tokens_seen == sum(int(b["attention_mask"].sum()) for b in padded + full)


def test_all_ones_mask_gives_the_same_loss(tiny_gpt2):
    batch = _batches(1, pad=False)[0]
    with_mask, _ = causal_lm_loss(tiny_gpt2, batch)
    without = {k: v for k, v in batch.items() if k != "attention_mask"}
    torch.testing.assert_close(
        causal_lm_loss(tiny_gpt2, without)[0], with_mask, rtol=1e-6, atol=1e-6
    )


def test_cast_frozen_is_bit_identical_under_bf16_autocast(tiny_gpt2):
    lorakit.apply_lora(tiny_gpt2, lorakit.LoRAConfig(r=2, alpha=4, targets=["q", "v"]))
    models = {flag: copy.deepcopy(tiny_gpt2) for flag in (False, True)}
    batches = _batches(4)
    results = {}
    for flag, model in models.items():
        cfg = TrainConfig(lr=1e-2, bf16=True, cast_frozen=flag, log_every=1, progress=False)
        results[flag] = train(model, batches, cfg, eval_batches=batches[:1], device="cpu")
    cast = frozen_matmul_weights(models[True])
    assert cast and all(p.dtype == torch.bfloat16 for p in cast.values())
    assert models[True].transformer.wte.weight.dtype == torch.float32  # tied to the head: kept
    assert models[False].transformer.h[0].mlp.c_fc.weight.dtype == torch.float32
    assert models[True].transformer.h[0].mlp.c_fc.weight.dtype == torch.bfloat16
    assert [h["loss"] for h in results[True].history] == [h["loss"] for h in results[False].history]
    assert results[True].evals == results[False].evals
    trained = {n: p for n, p in models[False].named_parameters() if p.requires_grad}
    for name, p in models[True].named_parameters():
        if p.requires_grad:
            assert p.dtype == torch.float32 and torch.equal(p, trained[name]), name
    assert evaluate_loss(models[True], batches, "cpu", bf16=True) == evaluate_loss(
        models[False], batches, "cpu", bf16=True
    )


def test_cast_frozen_is_ignored_without_autocast_and_for_full_finetuning(tiny_gpt2):
    lora = copy.deepcopy(tiny_gpt2)
    lorakit.apply_lora(lora, lorakit.LoRAConfig(r=2, alpha=4, targets=["q", "v"]))
    train(
        lora, _batches(1), TrainConfig(bf16=False, cast_frozen=True, progress=False), device="cpu"
    )
    assert lora.transformer.h[0].mlp.c_fc.weight.dtype == torch.float32
    # full fine-tuning: nothing is frozen, so nothing is cast and training runs as usual
    train(
        tiny_gpt2,
        _batches(1),
        TrainConfig(bf16=True, cast_frozen=True, progress=False),
        device="cpu",
    )
    assert all(p.dtype == torch.float32 for p in tiny_gpt2.parameters())
