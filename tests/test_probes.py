"""The base's size rule (lorakit.models.specs) and its probes (lorakit.models.probes)."""

from __future__ import annotations

import math

import pytest
import torch

from lorakit.models import probes
from lorakit.models.specs import (
    GPT2_LADDER,
    REPEAT_EPOCHS,
    TOKENS_PER_PARAM,
    get_spec,
    gpt2_param_count,
    size_for_tokens,
    supported_params,
)
from tests.conftest import make_tiny_gpt2, make_tiny_tokenizer


def test_param_count_matches_a_built_gpt2():
    for n_layer, n_embd, vocab, positions in ((2, 32, 300, 128), (3, 48, 500, 64)):
        model = make_tiny_gpt2(
            vocab_size=vocab, n_layer=n_layer, n_embd=n_embd, n_positions=positions
        )
        assert gpt2_param_count(n_layer, n_embd, vocab, positions) == sum(
            p.numel() for p in model.parameters()
        )
    assert gpt2_param_count(12, 768, 16384, 1024) == 98_425_344  # the recorded gpu base


def test_gpu_size_rule_picks_by_tokens_with_gpt2_small_as_floor():
    spec = get_spec("gpu")
    small, medium = (gpt2_param_count(*s[:2], 16384, 1024) for s in GPT2_LADDER[:2])
    few, facts = size_for_tokens(spec, 2_500_000)
    assert (few.n_layer, few.n_embd, few.n_head) == tuple(GPT2_LADDER[0])
    assert facts["floor_decided"] and facts["params"] == small
    assert facts["supported_params"] == pytest.approx(REPEAT_EPOCHS * 2_500_000 / TOKENS_PER_PARAM)
    # just enough tokens for GPT-2 medium at 20 tokens per parameter over 4 passes
    need = math.ceil(medium * TOKENS_PER_PARAM / REPEAT_EPOCHS)
    big, facts = size_for_tokens(spec, need)
    assert (big.n_layer, big.n_embd) == (24, 1024) and not facts["floor_decided"]
    assert size_for_tokens(spec, need - 100)[0].n_layer == 12
    assert [r["params"] for r in facts["ladder"]] == sorted(r["params"] for r in facts["ladder"])
    fixed, facts = size_for_tokens(get_spec("cpu"), 10**12)  # other presets keep their shape
    assert fixed == get_spec("cpu") and facts["rule"] == "fixed by the preset"
    with pytest.raises(ValueError, match="positive"):
        supported_params(100, tokens_per_param=0)


def test_unigram_perplexity_by_hand():
    train = torch.tensor([0, 0, 1])
    # counts + 1 = [3, 2, 1, 1] over V = 4: p = 3/7, 2/7, 1/7, 1/7
    got = probes.unigram_perplexity(train, torch.tensor([0, 3]), 4)
    assert got == pytest.approx(math.exp(-(math.log(3 / 7) + math.log(1 / 7)) / 2))
    uniform = probes.unigram_perplexity(torch.tensor([], dtype=torch.long), torch.tensor([1]), 5)
    assert uniform == pytest.approx(5.0)  # nothing counted: uniform over the vocabulary
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        probes.unigram_perplexity(train, torch.tensor([4]), 4)
    with pytest.raises(ValueError, match="at least one"):
        probes.unigram_perplexity(train, torch.tensor([], dtype=torch.long), 4)


def test_text_perplexity_is_the_token_weighted_loss():
    tok, model = make_tiny_tokenizer(), make_tiny_gpt2()
    texts = ["A low rank update.", "The Eagle is a coffee shop near the river."]
    eos = tok.eos_token_id
    nll, count = 0.0, 0
    for text in texts:
        ids = torch.tensor([[eos, *tok(text)["input_ids"], eos]])
        with torch.no_grad():
            logp = model(ids).logits[0, :-1].log_softmax(-1)
        nll -= logp.gather(-1, ids[0, 1:, None]).sum().item()
        count += ids.shape[1] - 1
    got = probes.text_perplexity(model, tok, texts, batch_size=2)  # one padded batch
    assert got == pytest.approx(math.exp(nll / count), rel=1e-4)


def test_copy_prompts_hold_the_name_once_and_end_before_it():
    cases = probes.copy_cases(9)
    assert len(cases) == 9 and len({name for _, name in cases}) == 9
    for prompt, name in cases:
        assert prompt.count(name) == 1 and not prompt.rstrip().endswith(name)
        assert prompt == prompt.rstrip()
    assert len({p.replace(n, "") for p, n in cases[:3]}) == 3  # the templates take turns
    assert "restaurant" in probes.copy_prompt("X", {})  # missing facts have defaults
    train_names = {n for p, n in probes.copy_cases(50, split="train")}
    assert not train_names & {n for _, n in probes.copy_cases(50)}  # test names are unseen


class _Copier(torch.nn.Module):
    """A stand-in for a base that copies perfectly: generate() appends the prompt's name."""

    def __init__(self, tokenizer, cases, every: int = 1):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.tok, self.names, self.every = tokenizer, {p: n for p, n in cases}, every

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        rows = []
        for i, (ids, mask) in enumerate(zip(input_ids, attention_mask)):
            prompt = self.tok.decode(ids[mask.bool()])
            answer = " " + self.names[prompt] if i % self.every == 0 else " somewhere else"
            new = self.tok(answer + " and more")["input_ids"][:max_new_tokens]
            rows.append(ids.tolist() + new + [0] * (max_new_tokens - len(new)))
        return torch.tensor(rows)

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, len(self.tok))
        return type("Out", (), {"logits": logits})()


def test_copy_probe_scores_rate_interval_and_logprobs():
    tok = make_tiny_tokenizer()
    cases = probes.copy_cases(6)
    result = probes.copy_probe(_Copier(tok, cases), tok, cases, examples=2)
    assert result["n"] == 6 and result["copied"] == 6 and result["rate"] == 1.0
    assert result["interval95"][0] > 0.5 and result["interval95"][1] == 1.0
    assert result["name_logprob"] == pytest.approx(-math.log(len(tok)))
    assert len(result["examples"]) == 2 and result["decoding"] == "greedy"
    half = probes.copy_probe(_Copier(tok, cases, every=2), tok, cases)
    assert half["copied"] == 3 and half["interval95"][0] < 0.5 < half["interval95"][1]
    with pytest.raises(ValueError, match="at least 2"):
        probes.copy_probe(_Copier(tok, cases), tok, cases[:1])


def test_copy_probe_runs_on_a_real_gpt2():
    tok, model = make_tiny_tokenizer(), make_tiny_gpt2()
    model.train()
    result = probes.copy_probe(model, tok, probes.copy_cases(4))
    assert result["n"] == 4 and 0 <= result["copied"] <= 4 and model.training  # mode restored
    assert result["name_logprob"] < 0 and result["other_name_logprob"] < 0


def test_wilson_interval():
    assert probes.wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = probes.wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)


class _ContextBag(torch.nn.Module):
    """Logits that favour every token already in the sequence: a crude copier."""

    def __init__(self, vocab: int):
        super().__init__()
        self.w, self.vocab = torch.nn.Parameter(torch.zeros(1)), vocab

    def forward(self, input_ids, attention_mask=None):
        seen = torch.nn.functional.one_hot(input_ids, self.vocab).cumsum(1).clamp(max=1)
        bias = torch.arange(self.vocab) % 7 / 3  # so that each token has its own probability
        return type("Out", (), {"logits": 5.0 * seen.float() + bias})()

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        return torch.cat([input_ids, input_ids[:, -max_new_tokens:]], 1)


def test_the_name_is_likelier_after_its_own_prompt_for_a_model_that_copies():
    tok = make_tiny_tokenizer()
    model, cases = _ContextBag(len(tok)), probes.copy_cases(8)
    result = probes.copy_probe(model, tok, cases)
    assert result["name_logprob"] > result["other_name_logprob"] + 1.0
    by_hand = []  # every token of the name, each predicted from everything before it
    for prompt, name in cases:
        p, n = tok(prompt)["input_ids"], tok(" " + name)["input_ids"]
        logp = model(torch.tensor([p + n])).logits[0].log_softmax(-1)
        by_hand.append(sum(logp[len(p) - 1 + j, t].item() for j, t in enumerate(n)) / len(n))
    assert result["name_logprob"] == pytest.approx(sum(by_hand) / len(by_hand))
    assert probes.wilson_interval(0, 9) == (0.0, pytest.approx(0.2991, abs=1e-4))
