"""Chapter 6's experiment: LoRA against full fine-tuning of GPT-2 on the E2E-style task.

``python -m lorakit.experiments finetune [--preset P] [--seeds S ...] [--lora-lrs LR ...]
[--full-lrs LR ...] [--jobs N] [--force] [--base NAME] [--data SOURCE] [--out DIR]``

Both methods start from the same base Φ0 (``lorakit.models.load_base``: real GPT-2 when it can be
had, else the offline base), train on the same data with :func:`lorakit.train.train`, decode the
test MRs with the paper's beam search and are scored with multi-reference BLEU, ROUGE-L, NIST and
the slot error rate (SER), each beside a bootstrap 95% interval over the test MRs
(:mod:`lorakit.experiments._stats`).

* LoRA: the paper's E2E setting (§5.4, Table 11): r = 4 on Wq, Wv, α = 32, dropout 0.1, AdamW
  lr 2e-4, weight decay 0.01, label smoothing 0.1, linear warm-up then linear decay, batch 8.
* Full fine-tuning: every weight trains, lr 5e-5 (the paper does not list its FT learning rate;
  5e-5 is the usual choice for fine-tuning all of GPT-2), the other settings the same.

Presets:

* ``ci``: a few MRs, a couple of steps, 2 beams: seconds on a CPU (a smoke test; no learning).
* ``cpu``: 400 train MRs (all their references), 1 epoch, 4 beams on 60 test MRs; minutes.
  The small offline base needs larger learning rates over so few steps (LoRA 5e-3, FT 3e-4).
* ``gpu``: the paper's schedule (:data:`lorakit.presets.PAPER_E2E`): every train MR with all its
  references, 5 epochs, batch 8, warm-up 500, label smoothing 0.1; beam 10 on the whole test
  split. On a GPU :func:`lorakit.train.train` replays the steps as CUDA graphs.

**The grid.** Every (method, learning rate, seed) is one run and writes one record,
``<out>/ch06_finetune_<preset>[_<base>_<data>][_<tag>]/<method>-lr<lr>-s<seed>.json`` (the
``_<base>_<data>`` part is left out for the offline base on the synthetic set). A run whose record
exists, made from the same ``lorakit/`` source, data and base, is skipped unless ``--force``: a
grid can be spread over several sessions. ``--budget-min M`` starts no run that the runs so far
say would end after M minutes. ``--jobs N`` makes N runs at once
(:mod:`lorakit.experiments._jobs`). Chapter 6's grid::

    python -m lorakit.experiments finetune --preset gpu --seeds 0 1 2 \\
        --lora-lrs 2e-4 5e-4 1e-3 --full-lrs 5e-5 1e-4

``python -m lorakit.experiments finetune-report`` aggregates the records
(:mod:`lorakit.experiments.finetune_report`). A record holds, for its run: the loss curve, dev
loss per epoch, the metrics and their bootstrap intervals, **every generated text** (in the order
of the test split), trainable/total parameters, peak GPU memory, step time, how the steps ran,
the wall time of training and decoding, checkpoint size, and the ``template`` row: the rule-based
realizer of :mod:`lorakit.data.template` scored the same way.

**The paper's base on the real data** (with internet access)::

    python -m lorakit.experiments finetune --preset gpu --base gpt2-medium --data real --seeds 0 1 2

trains GPT-2 medium on the real E2E data with the paper's settings (Table 3's setting).
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import torch

import lorakit
from lorakit.data import load_e2e, make_batches
from lorakit.data.sources import data_source
from lorakit.evaluate import generate_texts, score_all
from lorakit.experiments._finetune_settings import (  # noqa: F401  (re-exported)
    BOOTSTRAP_METRICS,
    GRID,
    LORA,
    METHODS,
    N_SAMPLES,
    PRESETS,
    base_block,
    preset_settings,
    settings_block,
)
from lorakit.presets import PAPER_E2E, get_preset, pick_device, seed_everything
from lorakit.train import TrainConfig, save_trainable, train


def _subset(records, n_mrs, refs_per_mr):
    records = records if n_mrs is None else records[:n_mrs]
    if refs_per_mr is None:
        return records
    return [type(r)(r.mr, r.refs[:refs_per_mr]) for r in records]


def prepare_method(base: torch.nn.Module, method: str) -> torch.nn.Module:
    """A copy of ``base`` ready to train with ``method`` ("lora" or "full"), via lorakit.baselines."""
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
    )
    result = train(model, batches, cfg, eval_batches=data["dev_batches"], device=device)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt_bytes = save_trainable(model, Path(tmp) / "trainable.safetensors").stat().st_size
    if method == "lora":
        lorakit.merge_lora(model)  # decoding with ΔW folded in: no extra latency (paper §4.1)
    test = data["test"]
    start = time.perf_counter()
    hyps = generate_texts(
        model,
        tokenizer,
        [r.mr for r in test],
        batch_size=settings["gen_batch"],
        max_new_tokens=settings["max_new_tokens"],
        num_beams=settings["beams"],
        device=device,
    )
    gen_s = time.perf_counter() - start
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


def run_finetune(
    preset: str | None = None,
    base_name: str = "auto",
    methods=METHODS,
    device: str | None = None,
    progress: bool = True,
    data_root=None,
    loaded: tuple | None = None,
    lr: dict[str, float] | None = None,
    source=None,
    seed: int = 0,
) -> dict:
    """Every method once, from one seed, in this process (the live run of chapter 6).

    Returns ``{"base", "data", "settings", "template", "methods": {name: run_method(...)}}``.
    ``lr`` overrides the preset's learning rate per method, e.g. ``{"lora": 1e-3}``.
    ``source``: the data (:func:`lorakit.data.sources.data_source`; default ``"auto"``, or
    ``data_root``, its former name for a folder). ``loaded`` may pass an already loaded
    ``(model, tokenizer, info)`` from :func:`lorakit.models.load_base` (it is copied, never
    changed); else ``base_name`` is loaded.
    """
    from lorakit.models import load_base

    preset = preset or get_preset()
    settings = preset_settings(preset, lr)
    dev = pick_device(device)
    src = data_source(source if source is not None else data_root or "auto")
    base, tokenizer, info = (
        loaded
        if loaded is not None
        else load_base(base_name, preset=preset, device="cpu", verbose=progress)
    )
    data = load_task(tokenizer, settings, src, base.config.n_positions)
    results = {
        m: run_method(base, tokenizer, m, data, settings, dev, progress, seed) for m in methods
    }
    return {
        "base": base_block(info),
        "data": data["info"],
        "settings": settings_block(settings, preset),
        "template": template_row(data["test"], settings.get("bootstrap", 0)),
        "methods": results,
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


def summary_table(results: dict) -> str:
    """A plain-text table of the methods in a :func:`run_finetune` result (or a record's results),
    with the template baseline's row first when the result has one."""
    head = (
        "method",
        "BLEU",
        "ROUGE-L",
        "NIST",
        "SER %",
        "trainable",
        "of total",
        "peak MiB",
        "step ms",
        "checkpoint",
    )

    def num(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    def scores(m):
        return (
            num(m["bleu"], ".1f"),
            num(m.get("rouge_l"), ".1f"),
            num(m.get("nist"), ".2f"),
            num(m.get("ser"), ".1f"),
        )

    rows = [head]
    if "template" in results:
        rows.append(("template", *scores(results["template"]["metrics"]), "0", "-", "-", "-", "-"))
    for name, r in results["methods"].items():
        rows.append(
            (
                name,
                *scores(r["metrics"]),
                f"{r['trainable_params']:,}",
                f"{100 * r['trainable_params'] / r['total_params']:.3f}%",
                num(r["peak_mem_mb"], ".0f"),
                num(None if r["step_time_s"] is None else 1000 * r["step_time_s"], ".1f"),
                _size(r["checkpoint_bytes"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
        for row in rows
    )


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def main(argv: list[str] | None = None):
    """The grid's command line; returns what it did (a ``GridOutcome``)."""
    from lorakit.experiments._finetune_grid import main as grid_main

    return grid_main(argv, doc=__doc__)
