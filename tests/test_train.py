"""lorakit.train: the loss, the loop, the schedule, saving only the trainable parameters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lorakit
from lorakit.train import (
    TrainConfig,
    causal_lm_loss,
    evaluate_loss,
    linear_warmup_decay,
    load_trainable,
    save_trainable,
    train,
)


def _batches(n=6, b=4, t=16, vocab=300, seed=0, prompt=4):
    """A learnable toy language: every sequence counts up modulo 50 from a random start."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        start = torch.randint(0, 50, (b, 1), generator=g)
        ids = (start + torch.arange(t)) % 50 + 10
        mask = torch.ones_like(ids)
        mask[0, -3:] = 0  # one padded row
        labels = ids.clone()
        labels[:, :prompt] = -100
        labels[mask == 0] = -100
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


class _LogitsOnly(nn.Module):
    """Wraps a model so that it has no base_model/LM-head split: the loss takes the logits path."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits


def test_loss_matches_hf_and_logits_path(tiny_gpt2):
    batch = _batches(1)[0]
    loss, n = causal_lm_loss(tiny_gpt2, batch)
    assert n == int((batch["labels"][:, 1:] != -100).sum())
    hf = tiny_gpt2(**batch).loss  # HF shifts and ignores -100 the same way
    torch.testing.assert_close(loss, hf, rtol=1e-5, atol=1e-5)
    loss.backward()  # the chunked head gives autograd's gradients, tied embedding included
    ours = {n: p.grad.clone() for n, p in tiny_gpt2.named_parameters()}
    tiny_gpt2.zero_grad()
    hf.backward()
    for name, p in tiny_gpt2.named_parameters():
        torch.testing.assert_close(ours[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)
    via_logits, _ = causal_lm_loss(_LogitsOnly(tiny_gpt2), batch)
    torch.testing.assert_close(loss, via_logits, rtol=1e-5, atol=1e-5)
    logits = tiny_gpt2(**batch).logits[:, :-1]
    target = batch["labels"][:, 1:]
    keep = target != -100
    smooth = F.cross_entropy(logits[keep], target[keep], label_smoothing=0.1)
    torch.testing.assert_close(
        causal_lm_loss(tiny_gpt2, batch, 0.1)[0], smooth, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("vocab", [50, 64])  # padded to 64 rows with a -inf bias; already aligned
def test_chunked_linear_cross_entropy_matches_autograd(monkeypatch, smoothing, vocab):
    import lorakit.train.loss as T

    monkeypatch.setattr(T, "CHUNK_ELEMENTS", 7 * 64)  # chunks of 7 rows: 3 chunks, one partial
    g = torch.Generator().manual_seed(0)
    h = torch.randn(20, 8, generator=g, requires_grad=True)
    w = torch.randn(vocab, 8, generator=g, requires_grad=True)
    t = torch.randint(0, vocab, (20,), generator=g)
    t[0] = vocab - 1  # the last real word, next to the padding
    loss = T.linear_cross_entropy(h, w, t, smoothing)
    (2 * loss).backward()  # a non-unit incoming gradient
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    ref = F.cross_entropy(h @ w.T, t, label_smoothing=smoothing)
    (2 * ref).backward()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(gh, h.grad)
    torch.testing.assert_close(gw, w.grad)
    with torch.no_grad():  # evaluation: the same value, no gradient work
        torch.testing.assert_close(T.linear_cross_entropy(h, w, t, smoothing), ref)


def test_head_padding_and_bf16_autocast():
    import lorakit.train.loss as T

    assert T.padded_vocab(50257) == 50304 and T.padded_vocab(64) == 64 and T.padded_vocab(1) == 64
    g = torch.Generator().manual_seed(1)
    h = torch.randn(16, 32, generator=g, requires_grad=True)
    w = torch.randn(97, 32, generator=g, requires_grad=True)
    t = torch.randint(0, 97, (16,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # matmuls in bf16, softmax in fp32
        loss = T.linear_cross_entropy(h, w, t, 0.1)
        ref = F.cross_entropy(F.linear(h, w).float(), t, label_smoothing=0.1)
    loss.backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(gh, h.grad, rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(gw, w.grad, rtol=2e-2, atol=2e-3)


def test_loss_without_labels_is_an_error(tiny_gpt2):
    batch = _batches(1)[0]
    batch["labels"] = torch.full_like(batch["labels"], -100)
    with pytest.raises(ValueError, match="no label"):
        causal_lm_loss(tiny_gpt2, batch)


def test_schedule_warms_up_then_decays_to_zero():
    f = linear_warmup_decay(warmup_steps=4, total_steps=10)
    values = [f(s) for s in range(11)]
    assert values[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert values[4] == pytest.approx(1.0) and values[10] == 0.0
    assert all(a >= b for a, b in zip(values[4:], values[5:]))


def test_train_learns_and_reports(tiny_gpt2):
    batches = _batches(8)
    before = evaluate_loss(tiny_gpt2, batches, device="cpu")
    cfg = TrainConfig(lr=3e-3, epochs=3, warmup_steps=2, log_every=5, progress=False)
    result = train(tiny_gpt2, batches, cfg, eval_batches=batches[:2], device="cpu")
    after = evaluate_loss(tiny_gpt2, batches, device="cpu")
    assert after < before - 0.5
    assert result.steps == 24 and [e["epoch"] for e in result.evals] == [1, 2, 3]
    assert result.evals[-1]["eval_loss"] < result.evals[0]["eval_loss"]
    assert [h["step"] for h in result.history] == [5, 10, 15, 20, 24]
    assert result.history[-1]["lr"] == 0.0
    assert set(result.history[0]) == {"step", "epoch", "loss", "lr", "tokens_per_s", "seconds"}
    assert result.tokens_seen == 3 * sum(int(b["attention_mask"].sum()) for b in batches)
    assert result.peak_mem_mb is None and result.wall_s > 0 and result.step_time_s > 0


def test_grad_accum_and_max_steps_count_optimizer_steps(tiny_gpt2):
    batches = _batches(5)
    r = train(tiny_gpt2, batches, TrainConfig(epochs=2, grad_accum=2, progress=False), device="cpu")
    assert r.steps == 6  # ceil(5 / 2) per epoch: the last partial accumulation also steps
    r = train(tiny_gpt2, batches, TrainConfig(epochs=5, max_steps=7, progress=False), device="cpu")
    assert r.steps == 7
    r = train(tiny_gpt2, iter(batches), TrainConfig(max_steps=3, progress=False), device="cpu")
    assert r.steps == 3
    with pytest.raises(TypeError, match="max_steps"):
        train(tiny_gpt2, iter(batches), TrainConfig(progress=False), device="cpu")


def test_only_trainable_parameters_change_with_lora(tiny_gpt2):
    lorakit.apply_lora(tiny_gpt2, lorakit.LoRAConfig(r=2, alpha=4, targets=["q", "v"]))
    before = {n: p.detach().clone() for n, p in tiny_gpt2.named_parameters()}
    train(tiny_gpt2, _batches(3), TrainConfig(lr=1e-2, progress=False), device="cpu")
    for name, p in tiny_gpt2.named_parameters():
        changed = not torch.equal(before[name], p)
        assert changed == p.requires_grad, name
    assert any(p.requires_grad for p in tiny_gpt2.parameters())


def test_weight_decay_spares_biases_and_layernorm(tiny_gpt2):
    from lorakit.train.loop import param_groups

    groups = param_groups(tiny_gpt2, 0.01)
    decayed = {id(p) for p in groups[0]["params"]}
    ln = tiny_gpt2.transformer.ln_f
    assert id(ln.weight) not in decayed and id(ln.bias) not in decayed
    assert id(tiny_gpt2.transformer.h[0].attn.c_attn.weight) in decayed
    assert groups[1]["weight_decay"] == 0.0


def test_deterministic_train_runs_under_deterministic_kernels_and_restores(tiny_gpt2):
    import copy

    import torch.utils.deterministic as det

    seen = []

    def spy(module, args):
        seen.append(torch.are_deterministic_algorithms_enabled())

    twin = copy.deepcopy(tiny_gpt2)
    tiny_gpt2.transformer.h[0].register_forward_pre_hook(spy)
    cfg = TrainConfig(lr=3e-3, epochs=1, progress=False, deterministic=True)
    before = (torch.are_deterministic_algorithms_enabled(), det.fill_uninitialized_memory)
    train(tiny_gpt2, _batches(3), cfg, device="cpu")
    assert seen and all(seen)  # every step ran with deterministic kernels
    assert (torch.are_deterministic_algorithms_enabled(), det.fill_uninitialized_memory) == before
    train(twin, _batches(3), cfg, device="cpu")
    for (name, a), b in zip(tiny_gpt2.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), name  # the same seed repeats bit for bit
    seen.clear()
    train(tiny_gpt2, _batches(1), TrainConfig(progress=False), device="cpu")
    assert seen == [before[0]]  # off by default: the caller's setting stands


def test_deterministic_algorithms_restores_after_an_error():
    from lorakit.presets import deterministic_algorithms

    before = torch.are_deterministic_algorithms_enabled()
    with pytest.raises(RuntimeError, match="boom"):
        with deterministic_algorithms():
            assert torch.are_deterministic_algorithms_enabled()
            raise RuntimeError("boom")
    assert torch.are_deterministic_algorithms_enabled() == before
    with deterministic_algorithms(False):
        assert torch.are_deterministic_algorithms_enabled() == before


def test_train_errors(tiny_gpt2):
    for p in tiny_gpt2.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad"):
        train(tiny_gpt2, _batches(1), TrainConfig(progress=False), device="cpu")
    tiny_gpt2.lm_head.weight.requires_grad_(True)
    bad = [{"input_ids": torch.zeros(2, 4, dtype=torch.long)}]
    with pytest.raises(KeyError, match="labels"):
        train(tiny_gpt2, bad, TrainConfig(progress=False), device="cpu")
    for kwargs in (
        {"lr": 0},
        {"epochs": 0},
        {"grad_accum": 0},
        {"label_smoothing": 1.0},
        {"max_steps": 0},
        {"deterministic": "yes"},
    ):
        with pytest.raises(ValueError):
            TrainConfig(**kwargs)
    with pytest.raises(ValueError, match="no batches"):
        evaluate_loss(tiny_gpt2, [], device="cpu")


def test_save_and_load_trainable(tiny_gpt2, tmp_path):
    from conftest import make_tiny_gpt2

    lorakit.apply_lora(tiny_gpt2, lorakit.LoRAConfig(r=2, alpha=4, targets=["q", "v"]))
    train(tiny_gpt2, _batches(2), TrainConfig(lr=1e-2, progress=False), device="cpu")
    path = save_trainable(tiny_gpt2, tmp_path / "adapter.safetensors")
    other = make_tiny_gpt2()
    lorakit.apply_lora(other, lorakit.LoRAConfig(r=2, alpha=4, targets=["q", "v"]))
    load_trainable(other, path)
    batch = _batches(1)[0]
    torch.testing.assert_close(causal_lm_loss(other, batch)[0], causal_lm_loss(tiny_gpt2, batch)[0])
    # a different method (rank 3) does not fit: clear error, model untouched
    wrong = make_tiny_gpt2()
    lorakit.apply_lora(wrong, lorakit.LoRAConfig(r=3, alpha=4, targets=["q", "v"]))
    snapshot = {n: p.detach().clone() for n, p in wrong.named_parameters()}
    with pytest.raises(ValueError, match="shape mismatch"):
        load_trainable(wrong, path)
    assert all(torch.equal(snapshot[n], p) for n, p in wrong.named_parameters())
    full = make_tiny_gpt2()  # full fine-tuning: every parameter is expected
    with pytest.raises(ValueError, match="missing in file"):
        load_trainable(full, path)
    with pytest.raises(FileNotFoundError, match="save_trainable"):
        load_trainable(other, tmp_path / "nope.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable"):
        load_trainable(other, tmp_path / "junk.safetensors")


def test_finetune_experiment_runs_both_methods(tiny_tokenizer):
    from conftest import make_tiny_gpt2

    from lorakit.experiments.finetune import prepare_method, run_finetune, summary_table
    from lorakit.models import BaseInfo

    tiny_gpt2 = make_tiny_gpt2(n_positions=512)  # the byte-level tiny tokenizer makes long MRs

    info = BaseInfo(source="test", name="tiny", n_params=0, tokenizer="tiny", vocab_size=300)
    before = {n: p.detach().clone() for n, p in tiny_gpt2.named_parameters()}
    out = run_finetune("ci", loaded=(tiny_gpt2, tiny_tokenizer, info), device="cpu", progress=False)
    assert all(torch.equal(before[n], p) for n, p in tiny_gpt2.named_parameters())  # a copy
    lora, full = out["methods"]["lora"], out["methods"]["full"]
    assert lora["trainable_params"] < full["trainable_params"] == full["total_params"]
    assert lora["checkpoint_bytes"] < full["checkpoint_bytes"]
    assert len(lora["samples"]) == 4
    assert set(lora["metrics"]) == {"bleu", "rouge_l", "nist", "ser"}
    assert lora["evals"] and lora["history"]
    assert out["template"]["metrics"]["ser"] == 0.0  # the template says every slot
    table = summary_table(out).splitlines()
    assert table[0].split()[:3] == ["method", "BLEU", "ROUGE-L"] and len(table) == 4
    assert table[1].split()[0] == "template"
    with pytest.raises(ValueError, match="Unknown method"):
        prepare_method(tiny_gpt2, "adapter")
    with pytest.raises(ValueError, match="Unknown preset"):
        run_finetune("huge", loaded=(tiny_gpt2, tiny_tokenizer, info))
