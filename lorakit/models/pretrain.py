"""Pretraining the offline base: a GPT-2 trained by lorakit on installed English prose.

The steps, each its own function so that chapter 5 can show them one by one:

1. :func:`lorakit.models.corpus.gather_corpus` -- the text (cached, see :mod:`.offline`);
2. :func:`lorakit.models.tokenizer.train_tokenizer` -- byte-level BPE on the training documents;
3. pack the token stream into blocks of ``block_size`` (labels = input_ids);
4. :func:`lorakit.train.train` -- the same loop every later chapter fine-tunes with;
5. held-out perplexity beside a unigram model's, perplexity on restaurant descriptions the base
   never saw, an in-context copy probe (:mod:`lorakit.models.probes`), sample generations,
   tokens per parameter, throughput and model FLOPs utilisation.

Sizes come from :data:`lorakit.models.specs.SPECS` by preset; the ``gpu`` preset's shape from the
tokens the corpus gives (:func:`lorakit.models.specs.size_for_tokens`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, replace

import torch

from lorakit.lora import count_parameters
from lorakit.models import offline
from lorakit.models.corpus import Corpus
from lorakit.models.flops import measure_matmul_peak, model_flops_per_token
from lorakit.models.info import BaseInfo, short_path, weights_sha256
from lorakit.models.probes import evaluate_base
from lorakit.models.specs import BaseSpec, get_spec, size_for_tokens
from lorakit.models.tokenizer import (
    PackedBatches,
    describe_tokenizer,
    encode_documents,
    pack_blocks,
    train_tokenizer,
)
from lorakit.presets import get_preset, pick_device, seed_everything

SAMPLE_PROMPTS = ("The function returns", "In this section we", "The restaurant")


def build_model(spec: BaseSpec, vocab_size: int, seed: int = 0):
    """A GPT-2 with random weights sized by ``spec`` (``spec.dropout`` while pretraining)."""
    from lorakit.models.gpt2 import build_gpt2

    seed_everything(seed)
    return build_gpt2(
        n_layer=spec.n_layer,
        n_embd=spec.n_embd,
        n_head=spec.n_head,
        vocab_size=vocab_size,
        n_positions=spec.n_positions,
        dropout=spec.dropout,
        seed=seed,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )


@torch.no_grad()
def sample_generations(
    model, tokenizer, prompts=SAMPLE_PROMPTS, max_new_tokens: int = 40, seed: int = 0
) -> list[str]:
    """Sampled continuations (top-k 40, temperature 0.8, seeded) of a few prompts."""
    device = next(model.parameters()).device
    out = []
    for i, prompt in enumerate(prompts):
        torch.manual_seed(seed + i)
        ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
        gen = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            top_k=40,
            temperature=0.8,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.eos_token_id,
        )
        out.append(tokenizer.decode(gen[0], skip_special_tokens=True))
    return out


def pretrain_base(
    preset: str | None = None,
    *,
    corpus: Corpus | None = None,
    tokenizer=None,
    device: str | torch.device | None = None,
    max_steps: int | None = None,
    cache_dir=None,
    save: bool = True,
    compile: bool | None = None,
    measure_peak: bool | None = None,
    progress: bool = True,
    verbose: bool = True,
    seed: int = 0,
    copy_text: float | None = None,
    deterministic: bool = True,
):
    """Build the offline base for ``preset``: corpus, tokenizer, pretraining, evaluation.

    Parameters
    ----------
    preset : ``"ci"``, ``"cpu"`` or ``"gpu"`` (default: the active preset).
    corpus : a corpus to use (default: gathered, or read from the cache).
    tokenizer : a tokenizer to use (default: trained on ``corpus.train_texts``).
    device : where to train (default :func:`lorakit.presets.pick_device`).
    max_steps : override the preset's number of optimizer steps.
    cache_dir : the lorakit cache (default ``$LORAKIT_CACHE`` or ``~/.cache/lorakit``).
    save : store the result in the cache, where ``load_base("offline")`` finds it.
    compile : ``torch.compile`` the backbone (default: the preset's choice, on CUDA only).
    measure_peak : measure the device's matmul rate for MFU (default: on CUDA only).
    progress, verbose : show a progress bar / print what happens.
    seed : seeds the initial weights, the block order and the samples.
    copy_text : the share of generated entity prose in the corpus, each invented name said two
        or more times (default: the spec's ``copy_text_fraction``; ignored when ``corpus`` is
        given). A base built with it is cached apart, under its corpus's SHA-256.
    deterministic : train with deterministic kernels (:class:`lorakit.train.TrainConfig`), so
        that building again on the same machine and software gives the same weights, bit for
        bit (``BaseInfo.weights_sha256`` says so). Runs made in separate sessions then start from
        one base.

    Returns
    -------
    (model, tokenizer, info, history)
        The trained ``GPT2LMHeadModel`` (eval mode, on ``device``), its tokenizer, a
        :class:`BaseInfo`, and the loss history (``lorakit.train`` rows: step, loss, lr, ...).
    """
    from lorakit.train import TrainConfig, evaluate_loss, train  # only pretraining needs it

    preset = preset or get_preset()
    spec = get_spec(preset)
    if copy_text is not None:
        spec = replace(spec, copy_text_fraction=float(copy_text))
    say = print if verbose else (lambda *a, **k: None)
    dev = pick_device(None if device is None else str(device))
    t0 = time.perf_counter()
    if corpus is None:
        corpus = offline.load_or_gather_corpus(
            spec.corpus_chars,
            cache_dir=cache_dir,
            verbose=verbose,
            copy_fraction=spec.copy_text_fraction,
        )
    say(f"corpus: {corpus.summary()}")
    if tokenizer is None:
        tokenizer = train_tokenizer(
            corpus.train_texts, spec.vocab_size, model_max_length=spec.n_positions
        )
        say(f"tokenizer: {describe_tokenizer(tokenizer)}")
    train_ids = encode_documents(tokenizer, corpus.train_texts)
    held_ids = encode_documents(tokenizer, corpus.heldout_texts)
    spec, sizing = size_for_tokens(spec, int(train_ids.numel()), len(tokenizer))
    if spec.sized_by_tokens:
        say(
            f"size rule: {sizing['train_tokens']:,} training tokens support N* = "
            f"{sizing['supported_params']:,.0f} parameters ({sizing['rule']}) -> "
            f"n_layer={spec.n_layer}, n_embd={spec.n_embd}"
            + (" (the floor)" if sizing["floor_decided"] else "")
        )
    train_blocks = pack_blocks(train_ids, spec.block_size)
    held_blocks = pack_blocks(held_ids, min(spec.block_size, held_ids.numel()))[: spec.eval_blocks]
    if dev.type == "cuda":
        train_blocks, held_blocks = train_blocks.to(dev), held_blocks.to(dev)
    batches = PackedBatches(train_blocks, spec.batch_size, shuffle=True, seed=seed)
    held_batches = PackedBatches(held_blocks, spec.batch_size, shuffle=False)
    if len(batches) == 0:
        raise ValueError(
            f"The corpus gives {train_blocks.shape[0]} blocks, fewer than one batch "
            f"of {spec.batch_size}; gather a larger corpus."
        )
    steps = min(max_steps or spec.max_steps, spec.max_epochs * len(batches))
    model = build_model(spec, len(tokenizer), seed=seed).to(dev)
    n_params = count_parameters(model)[1]
    n_nonemb = (
        n_params - model.transformer.wte.weight.numel() - model.transformer.wpe.weight.numel()
    )
    say(
        f"model: GPT-2 with n_layer={spec.n_layer}, n_embd={spec.n_embd}, n_head={spec.n_head}: "
        f"{n_params:,} parameters; {steps} steps of {spec.batch_size}x{spec.block_size} tokens "
        f"on {dev.type}"
    )
    use_compile = (spec.compile if compile is None else compile) and dev.type == "cuda"
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    cfg = TrainConfig(
        lr=spec.lr,
        weight_decay=0.1,
        epochs=spec.max_epochs,
        max_steps=steps,
        warmup_steps=min(spec.warmup_steps, steps // 5),
        grad_clip=1.0,
        log_every=max(1, steps // 50),
        seed=seed,
        compile=use_compile,
        progress=progress,
        deterministic=deterministic,
    )
    start_loss = evaluate_loss(model, held_batches, dev)
    try:
        result = train(model, batches, cfg, device=dev)
    except Exception as err:  # noqa: BLE001 - a compiler failure must not cost the whole run
        if not use_compile:
            raise
        print(
            f"lorakit: torch.compile failed ({type(err).__name__}: {str(err)[:200]}); "
            "training again without it."
        )
        model = build_model(spec, len(tokenizer), seed=seed).to(dev)
        cfg = replace(cfg, compile=False)
        result = train(model, batches, cfg, device=dev)
    held_loss = evaluate_loss(model, held_batches, dev)
    # Small presets pretrain without dropout (one or two passes do not overfit); every base is
    # saved with GPT-2's 0.1 so that fine-tuning in later chapters behaves as on real GPT-2. The
    # modules get the rate too: the model returned here must train as the one loaded from the
    # cache (GPT-2's dropouts are all nn.Dropout; SDPA's attention dropout reads attn_dropout.p).
    for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
        setattr(model.config, key, 0.1)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.1
    model.eval()
    samples = sample_generations(model, tokenizer, max_new_tokens=spec.sample_tokens, seed=seed)
    probes = evaluate_base(model, tokenizer, train_ids, held_ids, spec)
    wall = time.perf_counter() - t0
    training = _training_facts(spec, cfg, result, n_nonemb, len(tokenizer), dev, measure_peak)
    training.update(
        start_heldout_loss=start_loss,
        heldout_loss=held_loss,
        samples=samples,
        train_tokens=int(train_ids.numel()),
        heldout_tokens=int(held_ids.numel()),
        tokens_per_param=result.tokens_seen / n_params,
        train_tokens_per_param=int(train_ids.numel()) / n_params,
        non_embedding_params=n_nonemb,
        size_rule=sizing,
        corpus_sources=corpus.chars_by_origin(),
        **probes,
    )
    info = BaseInfo(
        source="offline",
        name="offline",
        n_params=n_params,
        tokenizer=describe_tokenizer(tokenizer),
        vocab_size=len(tokenizer),
        corpus_chars=corpus.chars,
        corpus_tokens=int(train_ids.numel() + held_ids.numel()),
        corpus_documents=len(corpus.docs),
        corpus_sha256=corpus.sha256,
        heldout_perplexity=math.exp(held_loss),
        preset=preset,
        train_wall_s=wall,
        domain_text_used=corpus.domain_text_used,
        config={
            "n_layer": spec.n_layer,
            "n_embd": spec.n_embd,
            "n_head": spec.n_head,
            "n_positions": spec.n_positions,
        },
        training=training,
        weights_sha256=weights_sha256(model),
    )
    say(
        f"pretrained in {wall:.1f} s: held-out perplexity {math.exp(start_loss):.1f} -> "
        f"{info.heldout_perplexity:.1f} (unigram model: "
        f"{probes['unigram_heldout_perplexity']:.1f}); {training['tokens_per_param']:.3g} "
        "tokens seen per parameter"
    )
    if save:
        info.cache_path = str(
            offline.save_base(
                model, tokenizer, info, result.history, preset, corpus, cache_dir=cache_dir
            )
        )
        say(f"saved to the cache: {short_path(info.cache_path)}")
    model.eval()
    return model, tokenizer, info, result.history


def _training_facts(
    spec: BaseSpec,
    cfg,
    result,
    n_nonemb: int,
    vocab: int,
    dev: torch.device,
    measure_peak: bool | None,
) -> dict:
    rates = [row["tokens_per_s"] for row in result.history[1:]] or [
        row["tokens_per_s"] for row in result.history
    ]
    tok_s = sorted(rates)[len(rates) // 2] if rates else result.tokens_seen / result.wall_s
    flops = model_flops_per_token(spec.n_layer, spec.n_embd, vocab, spec.block_size, n_nonemb)
    facts = {
        "spec": asdict(spec),
        "train_config": asdict(cfg),
        "device": str(dev),
        "steps": result.steps,
        "tokens_seen": result.tokens_seen,
        "train_s": result.wall_s,
        "tokens_per_s": tok_s,
        "tokens_per_s_overall": result.tokens_seen / max(result.wall_s, 1e-9),
        "flops_per_token": flops,
        "achieved_tflops": flops["total"] * tok_s / 1e12,
        "peak_mem_mb": result.peak_mem_mb,
        "final_train_loss": result.history[-1]["loss"] if result.history else None,
    }
    if measure_peak if measure_peak is not None else dev.type == "cuda":
        peak = measure_matmul_peak(dev, n=8192 if dev.type == "cuda" else 1024)
        facts.update(
            matmul_peak_tflops=peak,
            matmul_dtype="bf16" if dev.type == "cuda" else "fp32",
            mfu=facts["achieved_tflops"] / peak,
            mfu_without_lm_head=(flops["total"] - flops["lm_head"]) * tok_s / 1e12 / peak,
        )
    return facts
