"""lorakit.train.graphed: bucket padding and the static-buffer steps train exactly like eager steps.

CUDA graphs need a GPU (tests/test_graph.py runs them there); here the same steps run on a CPU
without capture, which tests everything the graphs replay: the padding of lengths, rows and label
positions, the masked loss with a count on the device, and the split into forward + backward
and optimizer step.
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import make_tiny_gpt2

import lorakit
from lorakit.train import TrainConfig, causal_lm_loss, label_positions, linear_cross_entropy, train
from lorakit.train.graphed import (
    LENGTH_MULTIPLE,
    StaticSteps,
    bucket_length,
    label_capacity,
    pad_batch,
    pad_length,
    why_not_static,
)
from lorakit.train.loop import EagerSteps, param_groups


def _right_padded(lengths, T=None, prompt=3, seed=0, vocab=300):
    g = torch.Generator().manual_seed(seed)
    T = T or max(lengths)
    ids = torch.randint(5, vocab, (len(lengths), T), generator=g)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        labels[i, prompt:n] = ids[i, prompt:n]
        ids[i, n:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_bucket_length_and_label_capacity():
    assert bucket_length(1) == LENGTH_MULTIPLE
    assert bucket_length(17) == 2 * LENGTH_MULTIPLE
    assert bucket_length(120, max_positions=128) == 128
    assert bucket_length(126, max_positions=126) == 126  # never past the model's positions
    B, T = 8, 64
    caps = {label_capacity(n, B, T) for n in range(1, B * T + 1)}
    assert caps == {128, 256, 384, 512}  # at most four graphs for one (B, T)
    assert all(label_capacity(n, B, T) >= n for n in range(1, B * T + 1))


def test_pad_batch_keeps_every_label_and_adds_only_ignored_rows():
    batch = _right_padded([7, 12, 5])
    ids, pos, n = pad_batch(batch, B=4, T=16)
    ref = label_positions(batch["labels"])
    assert ids.shape == (4, 16) and n == ref.n and pos.padded
    assert float(pos.n) == ref.n
    assert pos.rows.numel() == label_capacity(n, 4, 16)
    # real rows: the same tokens at the same (b, t), re-indexed for width 16
    b, t = ref.rows // batch["input_ids"].shape[1], ref.rows % batch["input_ids"].shape[1]
    torch.testing.assert_close(pos.rows[:n], b * 16 + t)
    torch.testing.assert_close(pos.target[:n], ref.target)
    assert (pos.target[n:] == -100).all()


def test_why_not_static():
    assert why_not_static(_right_padded([4, 6])) is None
    left = _right_padded([4, 6])
    left["attention_mask"] = left["attention_mask"].flip(1)
    assert "right padding" in why_not_static(left)
    assert "keys" in why_not_static({**_right_padded([3]), "prefix": torch.zeros(1)})


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_masked_loss_with_a_tensor_count_equals_the_plain_loss(smoothing):
    torch.manual_seed(0)
    h = torch.randn(10, 8, requires_grad=True)
    w = torch.randn(50, 8, requires_grad=True)
    t = torch.randint(0, 50, (10,))
    plain = linear_cross_entropy(h[:7], w, t[:7], smoothing)
    padded_t = t.clone()
    padded_t[7:] = -100
    masked = linear_cross_entropy(h, w, padded_t, smoothing, count=torch.tensor(7.0))
    torch.testing.assert_close(masked, plain)
    gh1, gw1 = torch.autograd.grad(plain, (h, w))
    gh2, gw2 = torch.autograd.grad(masked, (h, w))
    torch.testing.assert_close(gh2[:7], gh1[:7])
    assert (gh2[7:] == 0).all()  # padding rows get no gradient
    torch.testing.assert_close(gw2, gw1)


def test_padded_batch_gives_the_same_loss(tiny_gpt2):
    batch = _right_padded([9, 14, 6])
    ref, _ = causal_lm_loss(tiny_gpt2, batch, 0.1)
    ids, pos, _ = pad_batch(batch, B=4, T=32)
    padded, _ = causal_lm_loss(tiny_gpt2, {"input_ids": ids}, 0.1, positions=pos)
    torch.testing.assert_close(padded, ref, rtol=1e-5, atol=1e-6)


def _batches():
    lengths = [[9, 14, 6, 11], [21, 5, 8, 12], [7, 7, 15, 10], [13, 6, 9]]  # the last one short
    return [_right_padded(ls, seed=i) for i, ls in enumerate(lengths)]


@pytest.mark.parametrize("method,grad_accum", [("lora", 1), ("lora", 3), ("ft", 2)])
def test_static_steps_train_exactly_like_eager_steps(method, grad_accum):
    torch.manual_seed(0)
    base = make_tiny_gpt2()
    if method == "lora":
        lorakit.apply_lora(base, lorakit.LoRAConfig(r=2, alpha=4, targets=["q", "v"]))
        with torch.no_grad():  # B = 0 would hide mistakes in the branch's gradients
            for _, m in lorakit.lora_layers(base):
                m.lora_B.normal_(0, 0.1)
    models = [copy.deepcopy(base), copy.deepcopy(base)]
    losses, runners = [], []
    for i, model in enumerate(models):
        model.train()
        groups = param_groups(model, 0.01)
        params = [p for g in groups for p in g["params"]]
        # eps 1e-4: Adam turns round-off in a gradient that is zero in exact arithmetic (the key
        # bias of attention) into steps of size lr; a larger eps keeps such noise small
        opt = torch.optim.AdamW(
            groups, lr=torch.tensor(1e-2) if i else 1e-2, eps=1e-4, foreach=False
        )

        def loss_fn(batch, positions, model=model):
            return causal_lm_loss(model, batch, 0.1, None, positions)

        runner = (
            StaticSteps(
                model,
                params,
                opt,
                loss_fn,
                grad_accum,
                1.0,
                torch.device("cpu"),
                capture=False,
                batch_size=4,
                max_positions=128,
            )
            if i
            else EagerSteps(params, opt, loss_fn, grad_accum, 1.0, torch.device("cpu"))
        )
        runners.append(runner)
        out = []
        for _epoch in range(2):
            for j, batch in enumerate(_batches()):
                runner.micro(batch)
                if (j + 1) % grad_accum == 0 or j == 3:
                    runner.step()
                    out.append(runner.read_loss())
        losses.append(out)
    torch.testing.assert_close(
        torch.tensor(losses[1]), torch.tensor(losses[0]), rtol=1e-5, atol=1e-6
    )
    for (name, p0), p1 in zip(models[0].named_parameters(), models[1].parameters()):
        torch.testing.assert_close(p1, p0, rtol=1e-5, atol=1e-6, msg=name)
    assert len(runners[1].buckets) >= 2  # several lengths, so several buckets were used


def test_train_config_cuda_graphs_setting():
    with pytest.raises(ValueError, match="cuda_graphs"):
        TrainConfig(cuda_graphs="yes")
    model = make_tiny_gpt2()
    with pytest.raises(ValueError, match="needs a CUDA device"):
        train(model, _batches(), TrainConfig(cuda_graphs=True, progress=False), device="cpu")
    result = train(model, _batches(), TrainConfig(progress=False), device="cpu")
    assert result.cuda_graphs is None  # eager on a CPU, whatever "auto" would do on a GPU


# -- on a GPU: train() with CUDA graphs --------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")


def _gpu_batches(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        lengths = torch.randint(6, 40, (4,), generator=g).tolist()
        out.append(_right_padded(lengths if i % 5 else lengths[:3], seed=seed + i))
    return out


@cuda
@pytest.mark.parametrize("grad_accum", [1, 2])
def test_graphed_train_matches_eager_train_on_a_gpu(grad_accum):
    torch.manual_seed(0)
    base = make_tiny_gpt2()
    lorakit.apply_lora(base, lorakit.LoRAConfig(r=2, alpha=4, targets=["q", "v"]))
    with torch.no_grad():
        for _, m in lorakit.lora_layers(base):
            m.lora_B.normal_(0, 0.1)
    batches, runs = _gpu_batches(), []
    for graphs in (False, True):
        model = copy.deepcopy(base)
        cfg = TrainConfig(
            lr=1e-2,
            epochs=2,
            bf16=False,
            grad_accum=grad_accum,
            log_every=1,
            progress=False,
            cuda_graphs=graphs,
            warmup_steps=2,
        )
        runs.append((model, train(model, batches, cfg, eval_batches=batches[:2], device="cuda")))
    (eager, r0), (graphed, r1) = runs
    assert r0.cuda_graphs is None
    assert r1.cuda_graphs["fallback"] is None and r1.cuda_graphs["graphs"] >= 3
    assert r1.steps == r0.steps
    torch.testing.assert_close(
        torch.tensor([h["loss"] for h in r1.history]),
        torch.tensor([h["loss"] for h in r0.history]),
        rtol=1e-4,
        atol=1e-5,
    )
    assert [h["lr"] for h in r1.history] == [h["lr"] for h in r0.history]
    for (name, p0), p1 in zip(eager.named_parameters(), graphed.parameters()):
        torch.testing.assert_close(p1, p0, rtol=1e-4, atol=1e-5, msg=name)
    assert r1.evals[-1]["eval_loss"] == pytest.approx(r0.evals[-1]["eval_loss"], rel=1e-4)


@cuda
def test_graphed_train_with_dropout_and_bf16_learns():
    model = make_tiny_gpt2()
    lorakit.apply_lora(model, lorakit.LoRAConfig(r=4, alpha=8, targets=["q", "v"], dropout=0.1))
    cfg = TrainConfig(lr=5e-3, epochs=6, log_every=4, progress=False, label_smoothing=0.1)
    batches = _gpu_batches(8)
    result = train(model, batches, cfg, device="cuda")
    assert result.cuda_graphs["fallback"] is None and result.cuda_graphs["graphs"] >= 2
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.step_time_s is not None


@cuda
@pytest.mark.parametrize(
    "method",
    ["ft", "ft_top2", "bitfit", "adapter_h", "adapter_l", "prefix_embed", "prefix_layer", "lora"],
)
def test_every_baseline_trains_with_the_default_trainer_on_a_gpu(method, capsys):
    from lorakit.baselines import apply_method
    from lorakit.experiments.baselines import method_kwargs

    torch.manual_seed(0)
    model = make_tiny_gpt2()
    report = apply_method(model, method, **method_kwargs(method, 4, [7], 0))
    batches = _gpu_batches(6)
    for b in batches:  # a separator token in every prompt, as the prefix methods expect
        b["input_ids"][:, 2] = 7
    cfg = TrainConfig(lr=1e-3, epochs=2, log_every=2, progress=False)
    result = train(model, report.wrap_batches(batches), cfg, device="cuda")
    info = result.cuda_graphs
    said = capsys.readouterr().out
    print(f"{method}: {info}")
    # every method of chapter 7 is captured: an eager fallback would make its GPU runs several
    # times slower (the prefix methods' forward has static shapes and no host read-back)
    assert info["fallback"] is None and info["graphs"] >= 2, said
    assert all(h["loss"] == h["loss"] for h in result.history)  # no NaN


def test_widening_a_batch_for_compile_changes_no_loss(tiny_gpt2):
    batch = _right_padded([9, 14, 6])
    wide = pad_length(batch, 32)
    assert wide["input_ids"].shape == (3, 32) and (wide["labels"][:, 14:] == -100).all()
    ref, n = causal_lm_loss(tiny_gpt2, batch, 0.1)
    got, m = causal_lm_loss(tiny_gpt2, wide, 0.1)
    assert n == m
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


def test_compile_and_forced_graphs_do_not_combine():
    cfg = TrainConfig(compile=True, cuda_graphs=True, progress=False)
    with pytest.raises(ValueError, match="cannot be combined"):
        from lorakit.train.loop import _use_graphs

        _use_graphs(cfg, torch.device("cuda"))
