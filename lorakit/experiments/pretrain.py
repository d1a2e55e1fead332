"""Pretrain the offline base Φ0 and record the run (chapter 5).

    python -m lorakit.experiments pretrain [--preset gpu] [--out DIR] [--max-steps N]
                                           [--copy-text FRACTION]

Builds the base for the preset (corpus, tokenizer, pretraining with ``lorakit.train``), leaves it
in the lorakit cache so later experiments on the same machine reuse it, and writes the record
``ch05_pretrain_<preset>``: tokens seen and tokens per parameter, the size rule that picked the
model (``gpu``), tokens/s, model FLOPs utilisation against the bf16 matmul rate measured in the
same run, held-out perplexity beside a unigram model's, perplexity on restaurant descriptions of
the task's test split (which the base never saw), the in-context copy probe (rate, n, 95%
interval), the corpus's size, sources and SHA-256, a subsampled loss curve and sample
generations.

No ``--data``: when the corpus mixes in restaurant descriptions, they are the train references of
the shipped synthetic set (:func:`lorakit.data.domain_text`), whatever a machine has downloaded,
because the cached base is keyed by its corpus's hash; the restaurant perplexity and the copy
probe read the same set's test split. The record's ``data`` holds the SHA-256 of the files read.
"""

from __future__ import annotations

import argparse
import math
import time

from lorakit import runs
from lorakit.cli import positive_int, writable_folder
from lorakit.data.sources import data_source
from lorakit.presets import PRESETS, get_preset


def subsample(history: list[dict], n: int = 100) -> list[dict]:
    """At most ``n`` evenly spaced rows of a loss history (the last row always kept)."""
    if len(history) <= n:
        return list(history)
    idx = sorted({round(i * (len(history) - 1) / (n - 1)) for i in range(n)})
    return [history[i] for i in idx]


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give e.g. 0.1.") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1); give e.g. 0.1.")
    return value


def main(argv: list[str] | None = None) -> None:
    from lorakit.models import pretrain_base

    parser = argparse.ArgumentParser(
        prog="python -m lorakit.experiments pretrain", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        default=None,
        help="size of the base (default: LORAKIT_PRESET, or by hardware)",
    )
    parser.add_argument(
        "--out",
        type=writable_folder,
        default=None,
        help="where to write the record (default data/runs)",
    )
    parser.add_argument(
        "--max-steps", type=positive_int, default=None, help="override the preset's steps"
    )
    parser.add_argument(
        "--copy-text",
        type=fraction,
        default=None,
        help="share of generated prose about invented entities, each named twice or more, "
        "added to the corpus to teach in-context copying (default: the preset's, 0)",
    )
    parser.add_argument(
        "--no-measure-peak",
        action="store_true",
        help="skip measuring the matmul rate (no MFU in the record)",
    )
    args = parser.parse_args(argv)
    preset = args.preset or get_preset()
    start = time.perf_counter()
    model, tokenizer, info, history = pretrain_base(
        preset,
        max_steps=args.max_steps,
        copy_text=args.copy_text,
        save=True,
        progress=True,
        measure_peak=False if args.no_measure_peak else True,
    )
    t = info.training
    results = {
        "tokens_seen": t["tokens_seen"],
        "steps": t["steps"],
        "train_s": t["train_s"],
        "tokens_per_s": t["tokens_per_s"],
        "tokens_per_s_overall": t["tokens_per_s_overall"],
        "flops_per_token": t["flops_per_token"],
        "achieved_tflops": t["achieved_tflops"],
        "matmul_peak_tflops": t.get("matmul_peak_tflops"),
        "matmul_dtype": t.get("matmul_dtype"),
        "mfu": t.get("mfu"),
        "mfu_without_lm_head": t.get("mfu_without_lm_head"),
        "peak_mem_mb": t["peak_mem_mb"],
        "heldout_perplexity": info.heldout_perplexity,
        "start_heldout_perplexity": math.exp(t["start_heldout_loss"]),
        "final_train_loss": t["final_train_loss"],
        "n_params": info.n_params,
        "model": info.config,
        "vocab_size": info.vocab_size,
        "tokenizer": info.tokenizer,
        "corpus_chars": info.corpus_chars,
        "corpus_tokens": info.corpus_tokens,
        "corpus_documents": info.corpus_documents,
        "corpus_sha256": info.corpus_sha256,
        "weights_sha256": info.weights_sha256,
        "domain_text_used": info.domain_text_used,
        "copy_text_fraction": t["spec"]["copy_text_fraction"],
        "build_s": info.train_wall_s,
        "loss_curve": subsample(history),
        "samples": t["samples"],
        "tokens_per_param": t["tokens_per_param"],
        "train_tokens_per_param": t["train_tokens_per_param"],
        "non_embedding_params": t["non_embedding_params"],
        "train_tokens": t["train_tokens"],
        "size_rule": t["size_rule"],
        "unigram_heldout_perplexity": t["unigram_heldout_perplexity"],
        "restaurant": t["restaurant"],
        "copy_probe": t["copy_probe"],
        "corpus_sources": t["corpus_sources"],
    }
    name = f"ch05_pretrain_{preset}"
    splits = (("train",) if info.domain_text_used else ()) + (
        ("test",) if t["copy_probe"] is not None else ()
    )  # train: unpaired domain text in the corpus; test: restaurant perplexity and copy probe
    data = data_source("synthetic").provenance(splits) if splits else None
    path = runs.save_record(
        name,
        results,
        preset=preset,
        config=t["spec"],
        wall_s=time.perf_counter() - start,
        seed=0,
        out_dir=args.out,
        data=data,
    )
    mfu = f"{results['mfu']:.1%}" if results["mfu"] is not None else "not measured"
    probe = results["copy_probe"]
    copies = f"{probe['copied']}/{probe['n']}" if probe else "not measured"
    print(
        f"{name}: {results['tokens_seen']:,} tokens at {results['tokens_per_s']:,.0f} tokens/s, "
        f"MFU {mfu}, held-out perplexity {info.heldout_perplexity:.2f} (unigram "
        f"{results['unigram_heldout_perplexity']:.1f}), {results['tokens_per_param']:.3g} "
        f"tokens per parameter, names copied {copies}; record {path}; "
        f"base cached at {info.cache_path}"
    )
