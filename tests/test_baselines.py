"""lorakit.baselines: every method trains, freezes what it should, counts as the paper says."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_gpt2

from lorakit import analysis
from lorakit.baselines import METHODS, apply_method, load_method, save_method
from lorakit.baselines.prompt import sample_token_ids
from lorakit.train import TrainConfig, evaluate_loss, train

SEP = [7, 9]  # stands for the token ids of " ||"
SETTINGS = {
    "lora": dict(r=4, alpha=8, targets=["q", "v"]),
    "adapter_h": dict(r=4),
    "adapter_l": dict(r=4),
    "prefix_embed": dict(l_p=3, l_i=2, separator_ids=SEP),
    "prefix_layer": dict(l_p=3, l_i=2, separator_ids=SEP),
    "prefix_kv": dict(l_p=3, l_i=2, separator_ids=SEP, variant="kv"),
    "bitfit": {},
    "ft_top2": {},
    "ft": {},
}
CASES = list(SETTINGS)


def _apply(model, case):
    name = "prefix_layer" if case == "prefix_kv" else case
    return apply_method(model, name, **SETTINGS[case])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batches(n_batches=2, B=4, seed=0):
    """``mr || text`` sequences whose text is a function of the mr: learnable in a few steps."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        mr = torch.randint(20, 120, (B, 6), generator=gen)
        text = (mr.flip(1) * 2) % 250 + 20
        ids = torch.cat([mr, torch.tensor(SEP).expand(B, 2), text], 1)
        labels = ids.clone()
        labels[:, :8] = -100
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    return out


def _fingerprint(model):
    """Everything a failed call must leave as it was: module tree, flags, values."""
    return (
        [n for n, _ in model.named_modules()],
        {n: p.requires_grad for n, p in model.named_parameters()},
        {k: v.clone() for k, v in model.state_dict().items()},
    )


def _same(a, b):
    return (
        a[0] == b[0]
        and a[1] == b[1]
        and a[2].keys() == b[2].keys()
        and all(torch.equal(a[2][k], b[2][k]) for k in a[2])
    )


@pytest.mark.parametrize("case", CASES)
def test_method_trains_and_frozen_weights_stay_bit_identical(case):
    model = make_tiny_gpt2()
    report = _apply(model, case)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert report.trainable == sum(p.numel() for p in trained.values()) > 0
    batches = report.wrap_batches(_batches())
    before = evaluate_loss(model, batches, device="cpu")
    cfg = TrainConfig(
        lr=1e-1 if "prefix" in case else 1e-2,
        max_steps=12,
        epochs=6,
        grad_clip=1.0,
        progress=False,
        log_every=1,
    )
    train(model, batches, cfg, device="cpu")
    after = evaluate_loss(model, batches, device="cpu")
    # the prefixes steer a random tiny model only a little in 12 steps, but they do steer it
    assert after < before - (0.005 if "prefix" in case else 0.02), (case, before, after)
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in frozen.items())
    assert any(not torch.equal(params[n], v) for n, v in trained.items())


@pytest.mark.parametrize("case", ["lora", "adapter_h", "adapter_l", "bitfit", "ft_top2", "ft"])
def test_methods_that_start_as_the_base_give_its_logits(case, tiny_gpt2):
    ids = _batches()[0]["input_ids"]
    with torch.no_grad():
        ref = tiny_gpt2(input_ids=ids).logits
        model = make_tiny_gpt2()
        _apply(model, case)
        out = model(input_ids=ids).logits
    assert torch.equal(out, ref) if case != "lora" else torch.allclose(out, ref, atol=1e-6)


@pytest.mark.parametrize("case", ["prefix_embed", "prefix_layer", "prefix_kv"])
def test_prefix_at_init_equals_base_reading_the_tokens_it_started_from(case, tiny_gpt2):
    """Special tokens start as what the base computes for real tokens: with a prefix only, the
    adapted model on [P, x] equals the base model on [those real tokens, x] at x's positions."""
    settings = dict(SETTINGS[case], l_p=4, l_i=0, separator_ids=None)
    model = make_tiny_gpt2()
    name = "prefix_layer" if case == "prefix_kv" else case
    report = apply_method(model, name, **settings)
    ids = _batches()[0]["input_ids"]
    real = sample_token_ids(300, 4, seed=0).expand(ids.shape[0], 4)
    with torch.no_grad():
        out = model(input_ids=report.prepare_batch({"input_ids": ids})["input_ids"]).logits
        ref = tiny_gpt2(input_ids=torch.cat([real, ids], 1)).logits
    torch.testing.assert_close(out[:, 4:], ref[:, 4:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("infix", ["before", "after"])
def test_special_tokens_are_inserted_at_prefix_and_at_the_separator(infix):
    model = make_tiny_gpt2()
    report = apply_method(model, "prefix_embed", l_p=2, l_i=3, separator_ids=SEP, infix=infix)
    pad = 0
    ids = torch.tensor([[pad, pad, 30, 31, 7, 9, 40, 41], [30, 31, 32, 7, 9, 40, 41, 42]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1], [1] * 8])
    labels = torch.where(ids >= 40, ids, -100)
    out = report.prepare_batch({"input_ids": ids, "attention_mask": mask, "labels": labels})
    P, I = [300, 301], [302, 303, 304]  # noqa: E741
    if infix == "before":  # appended to the MR: the separator still precedes the text
        expected = [
            [pad, pad, *P, 30, 31, *I, 7, 9, 40, 41],
            [*P, 30, 31, 32, *I, 7, 9, 40, 41, 42],
        ]
    else:
        expected = [
            [pad, pad, *P, 30, 31, 7, 9, *I, 40, 41],
            [*P, 30, 31, 32, 7, 9, *I, 40, 41, 42],
        ]
    assert out["input_ids"].tolist() == expected
    assert out["attention_mask"].tolist() == [[0, 0] + [1] * 11, [1] * 13]
    assert out["labels"].tolist()[1] == [-100] * 10 + [40, 41, 42]
    assert ids.shape == (2, 8)  # the input batch is not changed
    assert len(report.wrap_batches([out, out])) == 2
    assert report.config["infix"] == infix


def _first_text_prediction(model, report, ids):
    """Logits at the position that predicts the first text token (the one before it)."""
    batch = report.prepare_batch({"input_ids": ids, "labels": torch.where(ids >= 40, ids, -100)})
    first = (batch["labels"] != -100).int().argmax(1)  # index of the first text token
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"]).logits
    return logits[torch.arange(len(ids)), first - 1], batch["input_ids"][0, first[0] - 1]


def test_prelayer_first_text_token_is_predicted_by_a_real_token_that_reads_the_mr():
    """Why the infix goes before the separator: after it, the position that predicts the first
    word of the text is a special token whose state every layer overwrites, so what it predicts
    depends on the MR through the last block's attention only; before it, that position is the
    separator, computed by every layer (it can copy the restaurant's name from the MR)."""
    torch.manual_seed(0)
    mrs = torch.randint(20, 40, (2, 6))
    mrs[1, 3:] = mrs[0, 3:]  # the two MRs differ in their first tokens only
    ids = torch.cat([mrs, torch.tensor(SEP).expand(2, 2), torch.full((2, 2), 50)], 1)
    spread = {}
    for infix in ("before", "after"):
        model = make_tiny_gpt2(n_layer=3)
        report = apply_method(model, "prefix_layer", l_p=2, l_i=2, separator_ids=SEP, infix=infix)
        logits, token = _first_text_prediction(model, report, ids)
        assert (int(token) >= 300) == (infix == "after")  # a special id predicts it
        spread[infix] = float((logits[0] - logits[1]).abs().max())
        last = model.transformer.h[-1].block  # inside its PrefixLayerInput wrapper
        with torch.no_grad():  # silence the last block: only the earlier layers can carry the MR
            for p in (
                last.attn.c_proj.weight,
                last.attn.c_proj.bias,
                last.mlp.c_proj.weight,
                last.mlp.c_proj.bias,
            ):
                p.zero_()
        logits, _ = _first_text_prediction(model, report, ids)
        spread[infix + " without the last block"] = float((logits[0] - logits[1]).abs().max())
    assert spread["before"] > 0 and spread["before without the last block"] > 1e-3
    assert spread["after without the last block"] == 0.0  # blind to the MR below the top
    default = apply_method(make_tiny_gpt2(), "prefix_layer", l_p=1, l_i=1, separator_ids=SEP)
    assert default.config["infix"] == "before"


def test_counts_match_the_papers_formulas():
    L, d, r = 3, 48, 5

    def fresh():
        return make_tiny_gpt2(n_layer=L, n_embd=d, n_head=4)

    rep = apply_method(fresh(), "adapter_h", r=r)
    assert rep.trainable == rep.formula == analysis.adapter_params(2 * L, d, r, L_ln=2 * L)
    rep = apply_method(fresh(), "adapter_l", r=r)
    assert rep.trainable == rep.formula == analysis.adapter_params(L, d, r, L_ln=L)
    rep = apply_method(fresh(), "prefix_embed", l_p=6, l_i=2, separator_ids=SEP)
    assert rep.trainable == rep.formula == analysis.prefix_embed_params(d, 6, 2)
    rep = apply_method(fresh(), "prefix_layer", l_p=6, l_i=2, separator_ids=SEP)
    assert rep.trainable == rep.formula == analysis.prefix_layer_params(L, d, 6, 2)
    rep = apply_method(fresh(), "prefix_layer", l_p=6, l_i=2, separator_ids=SEP, variant="kv")
    assert rep.trainable == rep.formula == 2 * analysis.prefix_layer_params(L, d, 6, 2)
    rep = apply_method(fresh(), "lora", r=r, targets=["q", "v"])
    assert rep.trainable == rep.formula == analysis.lora_params(2 * L, d, r)
    rep = apply_method(fresh(), "bitfit")
    assert rep.trainable == L * (3 * d + d + 4 * d + d + 2 * d) + d  # + ln_f bias
    block = sum(p.numel() for p in fresh().transformer.h[0].parameters())
    rep = apply_method(fresh(), "ft_top2")
    assert rep.trainable == 2 * block + 2 * d
    rep = apply_method(fresh(), "ft")
    assert rep.trainable == rep.total == sum(p.numel() for p in fresh().parameters())


@pytest.mark.parametrize(
    "name, kwargs, error",
    [
        ("adapter_h", dict(r=0), ValueError),
        ("adapter_l", dict(r=-3), ValueError),
        ("adapter_h", dict(r=2.5), ValueError),
        ("adapter_h", dict(r=4, activation="swish"), ValueError),
        ("prefix_embed", dict(l_p=100, l_i=40, separator_ids=SEP), ValueError),
        ("prefix_layer", dict(l_p=128), ValueError),
        ("prefix_layer", dict(l_p=2, l_i=2), ValueError),  # an infix needs the separator
        ("prefix_embed", dict(l_p=0, l_i=0), ValueError),
        ("prefix_layer", dict(l_p=2, variant="deep"), ValueError),
        ("ft_top2", dict(n_top=5), ValueError),
        ("lora", dict(r=0), ValueError),
        ("no_such_method", {}, ValueError),
        ("adapter_h", dict(bottleneck=4), TypeError),
    ],
)
def test_bad_settings_raise_and_leave_the_model_untouched(name, kwargs, error, tiny_gpt2):
    before = _fingerprint(tiny_gpt2)
    with pytest.raises(error, match=r"\S"):
        apply_method(tiny_gpt2, name, **kwargs)
    assert _same(before, _fingerprint(tiny_gpt2))


@pytest.mark.parametrize(
    "first, second",
    [("adapter_h", "adapter_h"), ("lora", "bitfit"), ("prefix_embed", "adapter_l"), ("ft", "ft")],
)
def test_a_second_method_is_refused(first, second, tiny_gpt2):
    _apply(tiny_gpt2, first)
    before = _fingerprint(tiny_gpt2)
    with pytest.raises(ValueError, match="already carries"):
        _apply(tiny_gpt2, second)
    assert _same(before, _fingerprint(tiny_gpt2))


def test_prefix_batch_errors_are_clear(tiny_gpt2):
    report = apply_method(tiny_gpt2, "prefix_embed", l_p=4, l_i=2, separator_ids=SEP)
    with pytest.raises(ValueError, match="separator"):
        report.prepare_batch({"input_ids": torch.full((2, 10), 30)})
    long = torch.full((1, 125), 30)
    long[0, 3:5] = torch.tensor(SEP)
    with pytest.raises(ValueError, match="positions"):
        report.prepare_batch({"input_ids": long})
    with pytest.raises(ValueError, match="past the base vocabulary"):
        tiny_gpt2(input_ids=torch.tensor([[1, 2, 399]]))


@pytest.mark.parametrize("case", CASES)
def test_save_and_load_each_method_gives_identical_outputs(case, tmp_path):
    model = make_tiny_gpt2()
    report = _apply(model, case)
    batches = report.wrap_batches(_batches(1))
    train(model, batches, TrainConfig(lr=1e-2, max_steps=2, progress=False), device="cpu")
    save_method(model, tmp_path / case)
    fresh = make_tiny_gpt2()  # same seed: the same base weights
    load_method(fresh, tmp_path / case)
    batch = next(iter(batches))
    with torch.no_grad():
        a = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        b = fresh(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(a, b)
    load_method(fresh, tmp_path / case)  # same method already applied: weights only


def test_load_method_errors(tmp_path, tiny_gpt2):
    with pytest.raises(FileNotFoundError, match="save_method"):
        load_method(tiny_gpt2, tmp_path / "nothing")
    with pytest.raises(ValueError, match="carries no method"):
        save_method(tiny_gpt2, tmp_path / "x")
    model = make_tiny_gpt2()
    apply_method(model, "adapter_l", r=4)
    save_method(model, tmp_path / "adl")
    wider = make_tiny_gpt2(n_embd=48, n_head=2)
    before = _fingerprint(wider)
    with pytest.raises(ValueError, match="base of shape"):
        load_method(wider, tmp_path / "adl")
    assert _same(before, _fingerprint(wider))
    other = make_tiny_gpt2()
    apply_method(other, "adapter_h", r=4)
    with pytest.raises(ValueError, match="carries"):
        load_method(other, tmp_path / "adl")


def test_every_method_name_dispatches():
    for name in METHODS:
        report = apply_method(make_tiny_gpt2(), name.replace("_", "-"))
        assert report.method == name and report.trainable > 0


def test_a_model_that_is_not_gpt2_is_refused():
    with pytest.raises(TypeError, match="GPT-2"):
        apply_method(torch.nn.Linear(4, 4), "adapter_h", r=2)


def test_adapter_l_acts_on_each_block_output_after_the_residual_add():
    """Lin et al.'s adapter sits on top of each layer: y' = y + up(ReLU(down(LN(y)))), with y the
    block's output (after the MLP's residual add), not the MLP's output inside the block."""
    model = make_tiny_gpt2()
    rep = apply_method(model, "adapter_l", r=4)
    blocks = model.transformer.h
    assert rep.modules == [f"transformer.h.{i}.adapter" for i in range(len(blocks))]
    assert "transformer.h.0.mlp.c_fc.weight" in model.state_dict()  # the base keeps its names
    torch.manual_seed(0)
    for block in blocks:
        torch.nn.init.normal_(block.adapter.up.weight, std=0.5)  # a trained-looking adapter
    x = torch.randn(2, 5, model.config.n_embd)
    block = blocks[0]
    out = block(x)
    out = out[0] if isinstance(out, tuple) else out
    plain = block.forward(x)  # the block without its hook: attention, MLP, both residual adds
    y = plain[0] if isinstance(plain, tuple) else plain
    a = block.adapter
    torch.testing.assert_close(out, y + a.up(torch.relu(a.down(a.norm(y)))))
    assert not torch.allclose(out, y)
