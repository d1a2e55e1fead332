"""One run of chapter 6's experiment: the task's data, a method's copy of the base, training,
decoding and scoring (re-exported by :mod:`lorakit.experiments.finetune`).

The grid (:mod:`lorakit.experiments._finetune_grid`) and the live run of the chapter
(:func:`lorakit.experiments.finetune.run_finetune`) both make their runs with these.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import torch

import lorakit
from lorakit.data import load_e2e, make_batches
from lorakit.evaluate import generate_texts, score_all
from lorakit.experiments._finetune_settings import BOOTSTRAP_METRICS, LORA, METHODS, N_SAMPLES
from lorakit.presets import PAPER_E2E, seed_everything
from lorakit.train import TrainConfig, save_trainable, train


def _subset(records, n_mrs, refs_per_mr):
    records = records if n_mrs is None else records[:n_mrs]
    if refs_per_mr is None:
        return records
    return [type(r)(r.mr, r.refs[:refs_per_mr]) for r in records]


def prepare_method(base: torch.nn.Module, method: str) -> torch.nn.Module:
    """A copy of ``base`` ready to train with ``method`` ("lora" or "full"), via
    lorakit.baselines."""
    from lorakit.baselines import apply_method

    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; use one of {', '.join(METHODS)}.")
    model = copy.deepcopy(base)
    if method == "lora":
        apply_method(model, "lora", **LORA)
    else:
        apply_method(model, "ft")
    return model


def load_task(tokenizer, settings: dict, src, max_len: int) -> dict:
    """The splits of ``src`` at the preset's sizes: ``train_batches`` (length-bucketed, seed 0),
    ``dev_batches``, ``test`` (records) and ``info`` (what the record says about the data)."""
    train_recs = _subset(load_e2e("train", src), settings["train_mrs"], settings["refs_per_mr"])
    dev_recs = _subset(load_e2e("dev", src), settings["dev_mrs"], settings["refs_per_mr"])
    test = _subset(load_e2e("test", src), settings["test_mrs"], None)
    batches = make_batches(
        train_recs, tokenizer, settings["batch_size"], max_len, shuffle=True, seed=0
    )
    return {
        "train_batches": batches,
        "dev_batches": list(make_batches(dev_recs, tokenizer, 32, max_len, shuffle=False)),
        "test": test,
        "info": {
            "source": src.kind,
            "train_mrs": len(train_recs),
            "train_pairs": len(batches.examples),
            "dev_mrs": len(dev_recs),
            "test_mrs": len(test),
            "padding_fraction": batches.padding_fraction(),
        },
    }


def decode_timed(
    model: torch.nn.Module, tokenizer, mrs: list[str], settings: dict, device: torch.device
) -> tuple[list[str], float]:
    """Texts for ``mrs`` by the preset's beam search, and the seconds that decoding took.

    ``settings`` gives ``gen_batch`` (MRs per batch), ``max_new_tokens`` and ``beams``; ``model``
    is anything :func:`lorakit.evaluate.generate_texts` decodes with.
    """
    start = time.perf_counter()
    hyps = generate_texts(
        model,
        tokenizer,
        mrs,
        batch_size=settings["gen_batch"],
        max_new_tokens=settings["max_new_tokens"],
        num_beams=settings["beams"],
        device=device,
    )
    return hyps, time.perf_counter() - start


def scored(hyps: list[str], test, n_boot: int) -> dict:
    """Metrics of ``hyps`` on the test records and, with ``n_boot`` > 0, their bootstrap 95%
    intervals over test MRs (seed 0; see :func:`lorakit.experiments._stats.bootstrap_cis`)."""
    from lorakit.experiments._stats import bootstrap_cis

    refs, mrs = [list(r.refs) for r in test], [r.mr for r in test]
    out = {"metrics": score_all(hyps, refs, mrs=mrs)}
    if n_boot:
        cis = bootstrap_cis(hyps, refs, BOOTSTRAP_METRICS, n=n_boot, seed=0, mrs=mrs)
        out["bootstrap"] = {k: v.to_dict() for k, v in cis.items()}
    return out


def run_method(
    base,
    tokenizer,
    method: str,
    data: dict,
    settings: dict,
    device: torch.device,
    progress: bool = True,
    seed: int = 0,
) -> dict:
    """Fine-tune a copy of ``base`` with ``method`` from ``seed``, decode the test MRs, score them.

    ``data`` holds ``train_batches``, ``dev_batches`` and ``test`` (records), as
    :func:`load_task` makes them. ``seed`` sets the LoRA init, the dropout masks and the batch
    order (whatever ran before). Returns a JSON-able dict; ``hyps`` holds every generated text
    in the order of ``data["test"]`` (the model is freed before returning).
    """
    seed_everything(seed)
    batches = data["train_batches"]
    if hasattr(batches, "epoch"):
        batches = copy.copy(batches)
        batches.seed, batches.epoch = seed, 0
    model = prepare_method(base, method)
    trainable, total = lorakit.count_parameters(model)
    cfg = TrainConfig(
        lr=settings["lr"][method],
        weight_decay=PAPER_E2E["weight_decay"],
        epochs=settings["epochs"],
        warmup_steps=settings["warmup"],
        label_smoothing=PAPER_E2E["label_smoothing"],
        grad_clip=1.0,
        log_every=settings["log_every"],
        progress=progress,
        seed=seed,
        deterministic=settings.get("deterministic", False),
    )
    result = train(model, batches, cfg, eval_batches=data["dev_batches"], device=device)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt_bytes = save_trainable(model, Path(tmp) / "trainable.safetensors").stat().st_size
    if method == "lora":
        lorakit.merge_lora(model)  # decoding with ΔW folded in: no extra latency (paper §4.1)
    test = data["test"]
    hyps, gen_s = decode_timed(model, tokenizer, [r.mr for r in test], settings, device)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "method": method,
        "lr": cfg.lr,
        "seed": seed,
        "trainable_params": trainable,
        "total_params": total,
        "checkpoint_bytes": ckpt_bytes,
        "peak_mem_mb": result.peak_mem_mb,
        "step_time_s": result.step_time_s,
        "train_wall_s": result.wall_s,
        "steps": result.steps,
        "tokens_seen": result.tokens_seen,
        "history": result.history,
        "evals": result.evals,
        "dev_loss": result.evals[-1]["eval_loss"] if result.evals else None,
        **scored(hyps, test, settings.get("bootstrap", 0)),
        "generate_wall_s": gen_s,
        "cuda_graphs": result.cuda_graphs,
        "hyps": hyps,
        "samples": [
            {"mr": r.mr, "generated": h, "references": list(r.refs[:3])}
            for r, h in zip(test[:N_SAMPLES], hyps[:N_SAMPLES])
        ],
    }


def template_row(test, n_boot: int = 0) -> dict:
    """The template baseline on the test records: its metrics (with ``n_boot`` > 0 their
    bootstrap intervals) and a few samples."""
    from lorakit.data.template import template_texts

    hyps = template_texts([r.mr for r in test])
    return {
        **scored(hyps, test, n_boot),
        "samples": [{"mr": r.mr, "generated": h} for r, h in zip(test[:N_SAMPLES], hyps)],
    }
