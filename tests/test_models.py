"""load_base and the offline base (lorakit.models): fallbacks, messages, cache, pretraining."""

from __future__ import annotations

import copy
import math
import shutil
import time
from pathlib import Path

import pytest
import torch

import lorakit
from lorakit.models import (
    BaseInfo,
    BaseNotFoundError,
    BaseUnavailableError,
    load_base,
    pretrain_base,
    weights_sha256,
)
from lorakit.models.cache import verify_entry
from lorakit.models.flops import measure_matmul_peak, model_flops_per_token
from tests.conftest import make_tiny_gpt2, make_tiny_tokenizer


@pytest.fixture(scope="session")
def ci_cache(tmp_path_factory):
    """One ci-sized offline base, built once into a private cache and shared by the tests."""
    root = tmp_path_factory.mktemp("lorakit_cache")
    model, tok, info = load_base(
        "offline", preset="ci", cache_dir=root, device="cpu", verbose=False
    )
    return root, model, tok, info


@pytest.fixture
def offline_env(monkeypatch, ci_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LORAKIT_CACHE", str(ci_cache[0]))
    return ci_cache


def test_offline_base_is_a_pretrained_gpt2(ci_cache):
    root, model, tok, info = ci_cache
    assert type(model).__name__ == "GPT2LMHeadModel" and not model.training
    assert info.source == "offline" and info.preset == "ci"
    assert info.n_params == sum(p.numel() for p in model.parameters())
    assert info.vocab_size == len(tok) == model.config.vocab_size
    assert info.corpus_chars > 500_000 and info.corpus_documents > 100
    assert len(info.corpus_sha256) == 64 and info.corpus_tokens > 100_000
    assert isinstance(info.domain_text_used, bool)
    t = info.training
    # pretraining lowered the held-out loss well below a uniform guess over the vocabulary
    assert t["heldout_loss"] < t["start_heldout_loss"] - 1.0
    assert info.heldout_perplexity == pytest.approx(math.exp(t["heldout_loss"]))
    assert info.heldout_perplexity < 0.5 * info.vocab_size
    assert t["tokens_seen"] > 0 and t["tokens_per_s"] > 0 and len(t["samples"]) == 3
    assert t["train_config"]["deterministic"] is True  # so that a rebuild gives the same weights
    assert t["tokens_per_param"] == pytest.approx(t["tokens_seen"] / info.n_params)
    assert t["train_tokens_per_param"] == pytest.approx(t["train_tokens"] / info.n_params)
    assert t["size_rule"]["rule"] == "fixed by the preset"
    assert t["size_rule"]["params"] == info.n_params
    assert sum(t["corpus_sources"].values()) == info.corpus_chars
    # the network beats the unigram model, on held-out prose and on unseen restaurant text
    assert info.heldout_perplexity < t["unigram_heldout_perplexity"]
    r = t["restaurant"]
    assert r["texts"] == 128 and r["perplexity"] < r["unigram_perplexity"]
    probe = t["copy_probe"]
    assert probe["n"] == 24 and 0 <= probe["copied"] <= 24 and len(probe["interval95"]) == 2
    assert str(root) in info.cache_path and verify_entry(Path(info.cache_path)) is None
    assert model.config.resid_pdrop == 0.1  # saved for fine-tuning like real GPT-2
    d = info.as_dict()
    assert BaseInfo.from_dict(d) == info and "held-out ppl" in repr(info)


def test_cached_base_is_reused_and_identical(ci_cache):
    root, model, _, info = ci_cache
    start = time.perf_counter()
    again, _, info2 = load_base("offline", preset="ci", cache_dir=root, device="cpu", verbose=False)
    assert time.perf_counter() - start < 30  # loads, does not retrain
    assert info2.corpus_sha256 == info.corpus_sha256 and info2.cache_path == info.cache_path
    assert info2.weights_sha256 == info.weights_sha256 is not None  # the build that was saved
    for (n, p), (_, q) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(p, q), n


def test_a_just_built_base_trains_as_its_loaded_copy(ci_cache):
    # The ci base pretrains without dropout and is saved with GPT-2's 0.1; the model returned by
    # the build must carry 0.1 in its modules too, or the first fine-tune after a build (a fresh
    # machine, a notebook's first run) differs from every later one.
    root, built, _, _ = ci_cache
    loaded, _, _ = load_base("offline", preset="ci", cache_dir=root, device="cpu", verbose=False)

    def rates(model):
        return [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]

    assert rates(built) == rates(loaded) and set(rates(loaded)) == {0.1}
    ids = torch.randint(
        0, built.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0)
    )
    outs = []
    for model in (built, loaded):
        model = copy.deepcopy(model).train()
        torch.manual_seed(0)
        with torch.no_grad():
            outs.append(model(ids).logits)
    assert torch.equal(outs[0], outs[1])


def test_auto_without_network_falls_back_with_one_notice(offline_env, capsys):
    model, tok, info = load_base("auto", preset="ci", device="cpu")
    out = capsys.readouterr().out
    assert out.count("lorakit: real GPT-2 is not available") == 1
    assert "HF_HUB_OFFLINE=1" in out and "offline base" in out
    assert info.source == "offline" and "HF_HUB_OFFLINE" in info.notice


def test_auto_with_unreachable_hub_says_no_network(offline_env, monkeypatch, capsys):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    start = time.perf_counter()
    _, _, info = load_base("auto", preset="ci", device="cpu", verbose=False)
    assert time.perf_counter() - start < 30
    assert "no network" in capsys.readouterr().out and info.source == "offline"


def test_named_gpt2_offline_is_a_clear_fast_error(offline_env):
    start = time.perf_counter()
    with pytest.raises(BaseUnavailableError, match="HF_HUB_OFFLINE=1.*load_base\\('offline'\\)"):
        load_base("gpt2")
    assert time.perf_counter() - start < 10


def test_missing_or_foreign_local_directory(tmp_path):
    with pytest.raises(BaseNotFoundError, match="No model directory.*save_pretrained"):
        load_base(tmp_path / "nowhere")
    with pytest.raises(BaseNotFoundError, match="no config.json"):
        load_base(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="'bert' model"):
        load_base(tmp_path)
    with pytest.raises(TypeError, match="name must be"):
        load_base(3)


def test_local_directory_loads_through_from_pretrained(tmp_path):
    model, tok = make_tiny_gpt2(), make_tiny_tokenizer()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, tok2, info = load_base(str(tmp_path), device="cpu")
    assert info.source == "local" and info.n_params == sum(p.numel() for p in model.parameters())
    assert loaded.config._attn_implementation == "sdpa"
    ids = tok2("A low rank update.", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, model(ids).logits, atol=1e-5)
    # which build: the weights' SHA-256, the same after a save and a load
    assert info.weights_sha256 == weights_sha256(model) == weights_sha256(loaded)
    assert "weights sha256" in repr(info)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(BaseNotFoundError, match="tokenizer"):
        load_base(str(tmp_path))


def test_weights_sha256_tells_builds_apart_by_a_single_bit():
    a, b = make_tiny_gpt2(), make_tiny_gpt2()
    assert weights_sha256(a) == weights_sha256(b) == weights_sha256(copy.deepcopy(a))
    with torch.no_grad():
        w = b.transformer.h[0].attn.c_attn.weight
        w[0, 0] = torch.nextafter(w[0, 0], torch.tensor(float("inf")))  # the last bit of one weight
    assert weights_sha256(a) != weights_sha256(b)
    assert weights_sha256(a) != weights_sha256(copy.deepcopy(a).to(torch.bfloat16))
    assert weights_sha256(a) != weights_sha256(make_tiny_gpt2(seed=1))


def test_corrupt_cache_is_rebuilt_with_a_notice(ci_cache, tmp_path, capsys):
    root, model, _, info = ci_cache
    copy = tmp_path / "cache"
    shutil.copytree(root, copy)
    entry = copy / Path(info.cache_path).name
    weights = entry / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a truncated write
    rebuilt, _, info2 = load_base(
        "offline", preset="ci", cache_dir=copy, device="cpu", verbose=False
    )
    out = capsys.readouterr().out
    assert "is incomplete or corrupt" in out and "rebuilding" in out
    assert verify_entry(entry) is None and info2.corpus_sha256 == info.corpus_sha256
    # the same deterministic recipe gives the same held-out perplexity
    assert info2.heldout_perplexity == pytest.approx(info.heldout_perplexity, rel=1e-3)


def test_apply_lora_q_v_on_the_offline_base(ci_cache):
    _, base, _, info = ci_cache
    model = type(base)(base.config)
    model.load_state_dict(base.state_dict())
    L, d, r = model.config.n_layer, model.config.n_embd, 4
    report = lorakit.apply_lora(model, lorakit.LoRAConfig(r=r, alpha=8, targets=["q", "v"]))
    assert len(report.adapted) == L and all("c_attn" in n for n in report.adapted)
    trainable, total = lorakit.count_parameters(model)
    assert trainable == 2 * (2 * L) * d * r  # the paper's 2·L̂·d·r with L̂ = 2L matrices
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.randint(0, info.vocab_size, (2, 16))
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    layer = model.transformer.h[0].attn.c_attn
    delta = layer.delta_weight()  # (3d, d): the k rows stay exactly zero
    assert delta[d : 2 * d].abs().max() == 0 and delta[:d].abs().max() > 0


def test_flops_and_peak():
    f = model_flops_per_token(12, 768, 50257, 1024, 85_000_000)
    assert f["dense"] == 6 * 85_000_000 and f["attention"] == 12 * 12 * 1024 * 768
    assert f["total"] == f["dense"] + f["lm_head"] + f["attention"]
    assert measure_matmul_peak("cpu", n=128, seconds=0.05) > 0


def test_pretrain_rejects_an_unknown_preset():
    with pytest.raises(ValueError, match="no offline base"):
        pretrain_base("huge")


def test_pretrain_experiment_writes_a_record(offline_env, tmp_path):
    from lorakit import runs
    from lorakit.experiments import pretrain

    pretrain.main(
        ["--preset", "ci", "--out", str(tmp_path), "--max-steps", "4", "--no-measure-peak"]
    )
    rec = runs.load_record("ch05_pretrain_ci", runs_dir=tmp_path)
    res = rec["results"]
    assert res["steps"] == 4 and res["tokens_seen"] == 4 * 16 * 128
    assert res["corpus_sha256"] == offline_env[3].corpus_sha256 and res["mfu"] is None
    assert len(res["weights_sha256"]) == 64  # which build: the fine-tuning records name it too
    assert len(res["loss_curve"]) >= 2 and len(res["samples"]) == 3
    assert res["tokens_per_param"] == pytest.approx(res["tokens_seen"] / res["n_params"])
    assert res["unigram_heldout_perplexity"] > 1 and res["restaurant"]["texts"] == 128
    assert res["copy_probe"]["n"] == 24 and res["size_rule"]["train_tokens"] > 0
    assert sum(res["corpus_sources"].values()) == res["corpus_chars"]
    train = {"train.jsonl"} if res["domain_text_used"] else set()
    assert set(rec["data"]["files"]) == train | {"test.jsonl"}  # the probes read the test split
    assert pretrain.subsample(list(range(1000)), 10)[-1] == 999


def test_gpt2_from_the_local_hf_cache_needs_no_network(tmp_path, monkeypatch):
    """A GPT-2 already in the Hugging Face cache loads offline, through from_pretrained."""
    import huggingface_hub.constants as hf_constants

    snapshot = tmp_path / "models--gpt2" / "snapshots" / "0123abcd"
    make_tiny_gpt2().save_pretrained(snapshot)
    make_tiny_tokenizer().save_pretrained(snapshot)
    (tmp_path / "models--gpt2" / "refs").mkdir()
    (tmp_path / "models--gpt2" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok, info = load_base("auto", device="cpu")
    assert info.source == "hub" and info.name == "gpt2" and info.notice is None
    assert model.config.n_embd == 32 and tok.pad_token == "<|endoftext|>"
