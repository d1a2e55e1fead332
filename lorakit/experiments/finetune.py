"""Chapter 6's experiment: LoRA against full fine-tuning of GPT-2 on the E2E-style task.

``python -m lorakit.experiments finetune [--preset P] [--base NAME] [--data SOURCE] [--out DIR]``

Both methods start from the same base Φ0 (``lorakit.models.load_base``: real GPT-2 when it can be
had, else the offline base), train on the same batches with :func:`lorakit.train.train`, decode the
test MRs with the paper's beam search and are scored with multi-reference BLEU, ROUGE-L and NIST.

* LoRA: the paper's E2E setting (§5.4, Table 11): r = 4 on Wq, Wv, α = 32, dropout 0.1, AdamW
  lr 2e-4, weight decay 0.01, label smoothing 0.1, linear warm-up then linear decay, batch 8.
* Full fine-tuning: every weight trains, lr 5e-5 (the paper does not list its FT learning rate;
  5e-5 is the usual choice for fine-tuning all of GPT-2, ~4x below LoRA's because every weight
  moves), the other settings the same.

Presets (sizes chosen to fit the time each preset promises; the paper trains 5 epochs):

* ``ci``: a few MRs, a couple of steps, 2 beams: seconds on a CPU (a smoke test; no learning).
* ``cpu``: 400 train MRs (all their references), 1 epoch, 4 beams on 60 test MRs; minutes.
  The small offline base needs larger learning rates over so few steps (LoRA 5e-3, FT 3e-4);
  even so LoRA trails full fine-tuning there: r = 4 on Wq, Wv of a 256-wide base moves slowly.
* ``gpu``: the paper's schedule (Appendix D.3): every train MR with all its references, 5 epochs,
  batch 8, warm-up 500 steps, label smoothing 0.1, the paper's learning rates; then beam 10 on the
  whole test split. :func:`lorakit.train.train` replays the steps as CUDA graphs on a GPU, which
  is what makes the paper's ~26k LoRA steps a run of minutes on one H200 (an eager step of this
  small model is bound by kernel launches on the host).

The record ``ch06_finetune_<preset>`` holds per method: loss curve, dev loss per epoch, BLEU,
ROUGE-L, NIST, the slot error rate (SER), trainable/total parameters, peak GPU memory, mean step
time, how the steps ran (CUDA graphs), the wall time of training and of decoding, checkpoint size
and sample generations beside their references; and a ``template`` row: the deterministic
rule-based realizer of :mod:`lorakit.data.template` scored the same way, so that a reader sees
what learning adds.

``--data``: ``auto`` (default: the real E2E data when it is cached or can be downloaded, else the
shipped synthetic set, with a notice), ``synthetic``, ``real``, or a folder holding the splits
(``{split}.jsonl`` or the real E2E CSVs); see :func:`lorakit.data.sources.data_source`. The
record stores the source used and the SHA-256 of its files. With internet access,
``--base gpt2-medium --data real`` trains the paper's base on the real E2E data (at the
preset's sizes).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch

import lorakit
from lorakit.cli import device as device_arg
from lorakit.cli import positive_float, writable_folder
from lorakit.data import load_e2e, make_batches
from lorakit.data.sources import data_source
from lorakit.evaluate import generate_texts, score_all
from lorakit.presets import get_preset, pick_device, seed_everything
from lorakit.runs import save_record
from lorakit.train import TrainConfig, save_trainable, train

METHODS = ("lora", "full")
PRESETS: dict[str, dict] = {
    "ci": dict(train_mrs=12, dev_mrs=4, test_mrs=4, refs_per_mr=1, epochs=1, batch_size=4,
               warmup=1, lr={"lora": 2e-4, "full": 5e-5}, beams=2, gen_batch=4,
               max_new_tokens=16, log_every=1),
    "cpu": dict(train_mrs=400, dev_mrs=40, test_mrs=60, refs_per_mr=None, epochs=1, batch_size=8,
                warmup=20, lr={"lora": 5e-3, "full": 3e-4}, beams=4, gen_batch=30,
                max_new_tokens=48, log_every=10),
    # the paper's schedule: all train MRs and references, 5 epochs, batch 8, warm-up 500;
    # beam 10 on the whole test split
    "gpu": dict(train_mrs=None, dev_mrs=None, test_mrs=None, refs_per_mr=None, epochs=5,
                batch_size=8, warmup=500, lr={"lora": 2e-4, "full": 5e-5}, beams=10,
                gen_batch=100, max_new_tokens=96, log_every=250),
}
LORA = dict(r=4, alpha=32, targets=["q", "v"], dropout=0.1)
N_SAMPLES = 5


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


def run_method(base, tokenizer, method: str, data: dict, settings: dict, device: torch.device,
               progress: bool = True) -> dict:
    """Fine-tune a copy of ``base`` with ``method``, decode the test MRs and score them.

    ``data`` holds ``train_batches``, ``dev_batches`` and ``test`` (records). Returns a JSON-able
    dict of results (the model is freed before returning).
    """
    seed_everything(0)  # the same LoRA init and dropout masks whatever ran before
    batches = data["train_batches"]
    if hasattr(batches, "epoch"):
        batches.epoch = 0  # every method sees the same batches in the same order
    model = prepare_method(base, method)
    trainable, total = lorakit.count_parameters(model)
    cfg = TrainConfig(lr=settings["lr"][method], weight_decay=0.01, epochs=settings["epochs"],
                      warmup_steps=settings["warmup"], label_smoothing=0.1, grad_clip=1.0,
                      log_every=settings["log_every"], progress=progress)
    result = train(model, batches, cfg, eval_batches=data["dev_batches"],
                   device=device)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt_bytes = save_trainable(model, Path(tmp) / "trainable.safetensors").stat().st_size
    if method == "lora":
        lorakit.merge_lora(model)  # decoding with ΔW folded in: no extra latency (paper §4.1)
    test = data["test"]
    start = time.perf_counter()
    hyps = generate_texts(model, tokenizer, [r.mr for r in test], batch_size=settings["gen_batch"],
                          max_new_tokens=settings["max_new_tokens"], num_beams=settings["beams"],
                          device=device)
    gen_s = time.perf_counter() - start
    refs = [list(r.refs) for r in test]
    out = {
        "method": method, "lr": cfg.lr, "trainable_params": trainable, "total_params": total,
        "checkpoint_bytes": ckpt_bytes, "peak_mem_mb": result.peak_mem_mb,
        "step_time_s": result.step_time_s, "train_wall_s": result.wall_s, "steps": result.steps,
        "tokens_seen": result.tokens_seen, "history": result.history, "evals": result.evals,
        "metrics": score_all(hyps, refs, mrs=[r.mr for r in test]), "generate_wall_s": gen_s,
        "cuda_graphs": result.cuda_graphs,
        "samples": [{"mr": r.mr, "generated": h, "references": list(r.refs[:3])}
                    for r, h in zip(test[:N_SAMPLES], hyps[:N_SAMPLES])],
    }
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def run_finetune(preset: str | None = None, base_name: str = "auto", methods=METHODS,
                 device: str | None = None, progress: bool = True, data_root=None,
                 loaded: tuple | None = None, lr: dict[str, float] | None = None,
                 source=None) -> dict:
    """The whole experiment; returns ``{"base": ..., "settings": ..., "methods": {name: ...}}``.

    ``lr`` overrides the preset's learning rate per method, e.g. ``{"lora": 1e-3}``.
    ``source``: the data (:func:`lorakit.data.sources.data_source`; default ``"auto"``, or
    ``data_root``, its former name for a folder).

    ``loaded`` may pass an already loaded ``(model, tokenizer, info)`` from
    :func:`lorakit.models.load_base` (it is copied, never changed); else ``base_name`` is loaded.
    """
    from lorakit.models import load_base

    preset = preset or get_preset()
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; use one of {', '.join(PRESETS)}.")
    settings = dict(PRESETS[preset])
    if lr:
        unknown = set(lr) - set(METHODS)
        if unknown:
            raise ValueError(f"lr given for unknown methods {sorted(unknown)}; use {METHODS}.")
        settings["lr"] = {**settings["lr"], **lr}
    dev = pick_device(device)
    src = data_source(source if source is not None else data_root or "auto")
    base, tokenizer, info = loaded if loaded is not None else \
        load_base(base_name, preset=preset, device="cpu", verbose=progress)
    max_len = base.config.n_positions
    train_recs = _subset(load_e2e("train", src), settings["train_mrs"], settings["refs_per_mr"])
    dev_recs = _subset(load_e2e("dev", src), settings["dev_mrs"], settings["refs_per_mr"])
    test = _subset(load_e2e("test", src), settings["test_mrs"], None)
    data = {"train_batches": make_batches(train_recs, tokenizer, settings["batch_size"], max_len,
                                          shuffle=True, seed=0),
            "dev_batches": list(make_batches(dev_recs, tokenizer, 32, max_len, shuffle=False)),
            "test": test}
    results = {}
    for method in methods:
        results[method] = run_method(base, tokenizer, method, data, settings, dev, progress)
    return {
        "base": {"source": info.source, "name": info.name, "n_params": info.n_params,
                 "config": info.config, "notice": info.notice},
        "data": {"source": src.kind, "train_mrs": len(train_recs), "train_pairs": len(data["train_batches"].examples),
                 "dev_mrs": len(dev_recs), "test_mrs": len(test),
                 "padding_fraction": data["train_batches"].padding_fraction()},
        "settings": {**settings, "lora": LORA, "label_smoothing": 0.1, "weight_decay": 0.01,
                     "note": "gpu preset: the paper's schedule (all train MRs and references, "
                             "5 epochs, batch 8, warm-up 500), beam 10 on the whole test split"
                             if preset == "gpu" else f"{preset} preset: reduced sizes"},
        "template": template_row(test),
        "methods": results,
    }


def template_row(test) -> dict:
    """The template baseline on the test records: its metrics and a few samples."""
    from lorakit.data.template import template_texts

    hyps = template_texts([r.mr for r in test])
    return {"metrics": score_all(hyps, [list(r.refs) for r in test], mrs=[r.mr for r in test]),
            "samples": [{"mr": r.mr, "generated": h} for r, h in zip(test[:N_SAMPLES], hyps)]}


def summary_table(results: dict) -> str:
    """A plain-text table of the methods in a :func:`run_finetune` result (or a record's results),
    with the template baseline's row first when the result has one."""
    head = ("method", "BLEU", "ROUGE-L", "NIST", "SER %", "trainable", "of total", "peak MiB",
            "step ms", "checkpoint")

    def num(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    def scores(m):
        return (num(m["bleu"], ".1f"), num(m.get("rouge_l"), ".1f"), num(m.get("nist"), ".2f"),
                num(m.get("ser"), ".1f"))
    rows = [head]
    if "template" in results:
        rows.append(("template", *scores(results["template"]["metrics"]), "0", "-", "-", "-",
                     "-"))
    for name, r in results["methods"].items():
        rows.append((name, *scores(r["metrics"]), f"{r['trainable_params']:,}",
                     f"{100 * r['trainable_params'] / r['total_params']:.3f}%",
                     num(r["peak_mem_mb"], ".0f"),
                     num(None if r["step_time_s"] is None else 1000 * r["step_time_s"], ".1f"),
                     _size(r["checkpoint_bytes"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths))) for row in rows)


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lorakit.experiments finetune",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
    parser.add_argument("--base", default="auto", help="load_base name (default auto)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--device", type=device_arg, default=None)
    parser.add_argument("--out", type=writable_folder, default=None,
                        help="folder for the record (default data/runs)")
    parser.add_argument("--lora-lr", type=positive_float, default=None,
                        help="override LoRA's learning rate (default: the preset's)")
    parser.add_argument("--tag", default=None,
                        help="suffix of the record name: ch06_finetune_<preset>_<tag>")
    parser.add_argument("--data", default="auto",
                        help="auto (default), synthetic, real, or a folder with the splits")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    preset = args.preset or get_preset()
    start = time.perf_counter()
    lr = {"lora": args.lora_lr} if args.lora_lr is not None else None
    src = data_source(args.data)
    results = run_finetune(preset, args.base, args.methods, args.device, not args.no_progress,
                           lr=lr, source=src)
    wall = time.perf_counter() - start
    name = f"ch06_finetune_{preset}" + (f"_{args.tag}" if args.tag else "")
    path = save_record(name, results, preset=preset,
                       config={"base": args.base, "methods": args.methods, "lr_override": lr,
                               "data": args.data},
                       wall_s=wall, seed=0, out_dir=args.out, data=src)
    print(summary_table(results))
    print(f"wrote {path} ({wall:.0f} s)")
