"""Chapter 7's experiment: the paper's Table 3 and Figure 2 on our E2E-style task (§5.1, §5.4).

``python -m lorakit.experiments baselines [--preset P] [--base NAME] [--data SOURCE] [--jobs N]
[--out DIR]``

Every method of :mod:`lorakit.baselines` (FT, FT-Top2, BitFit, PreEmbed, PreLayer, AdapterL,
AdapterH, LoRA r=4 on Wq, Wv with α=32) fine-tunes a copy of the same base Φ0 on the same batches
(a seed fixes their order) with the same loop, :func:`lorakit.train.train` (AdamW, weight decay
0.01, linear warm-up then decay, label smoothing 0.1, batch ``batch_size``), decodes the test MRs
(the paper's beam search in the ``gpu`` preset: beam 10, no-repeat 4-grams, length penalty 0.9)
and is scored with BLEU, ROUGE-L, NIST and the slot error rate, SER
(:func:`lorakit.evaluate.score_all` with the test MRs). The prefix methods' special tokens go
into the training batches and into the decoding prompts alike. The ``template`` entry scores the
deterministic rule-based realizer of :mod:`lorakit.data.template` on the same test MRs, so that
every table shows what learning adds.

*Table 3*: the template's row, then one row per method, with its trainable parameters beside the
paper's formula, and the mean ± std over the seeds in ``seeds`` (3 in ``gpu`` for LoRA and the
adapters, whose scores are close). *Figure 2*: score against trainable parameters as the prefix
length ``l_p + l_i``, the adapter bottleneck and the LoRA rank grow (the Table 3 point is reused,
not trained again).

Learning rates, one per method (the paper tunes each; ours are usual values, raised for runs of a
few hundred steps instead of the paper's five epochs): FT 2e-4, FT-Top2 5e-4, BitFit 2e-3,
PreEmbed 5e-3, PreLayer 2e-3, adapters 1e-3, LoRA 1e-3 (the paper's 2e-4 is for ~26k steps).
A first cpu-preset run with FT at 1e-4 and FT-Top2 at 2e-4 left both far behind the others
after 60 steps (BLEU 8 and 5 against 21-23): too small for runs this short.

Presets: ``ci`` is a smoke test (seconds on a CPU, no learning). ``cpu``: a few hundred MRs, one
seed, a short sweep (minutes). ``gpu``: sized for one H200 in <= 4 minutes for everything, 23
fine-tuning runs: 1,200 train MRs (~10k pairs on the shipped set) of which 160 steps of batch 32
see ~5k, 60 test MRs decoded with beam 10, so each run is a few seconds of (CPU-bound) training
steps plus decoding.
The record ``ch07_baselines_<preset>`` holds all results and the time of each part.

``--data``: ``auto`` (default: the real E2E data when it is cached or can be downloaded, else the
shipped synthetic set, with a notice), ``synthetic``, ``real``, or a folder holding the splits
(``{split}.jsonl`` or the real E2E CSVs); see :func:`lorakit.data.sources.data_source`. The
record stores the source used and the SHA-256 of its files.

``--jobs N``: N runs at once, each in its own worker process (spread over the GPUs of the host);
every run seeds itself, so the record is the one ``--jobs 1`` writes, timings aside
(:mod:`lorakit.experiments._jobs`). The parts' times are then summed over runs, not wall time.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from lorakit.baselines import apply_method
from lorakit.cli import device, positive_int, writable_folder
from lorakit.data import LengthBucketBatches, load_e2e, make_examples, pad_id_of
from lorakit.data.sources import data_source
from lorakit.evaluate import generate_texts, score_all
from lorakit.experiments._jobs import Job, run_jobs
from lorakit.experiments.finetune import template_row
from lorakit.presets import get_preset, pick_device, seed_everything
from lorakit.runs import save_record
from lorakit.train import TrainConfig, train

LABELS = {"ft": "FT", "ft_top2": "FT-Top2", "bitfit": "BitFit", "prefix_embed": "PreEmbed",
          "prefix_layer": "PreLayer", "adapter_l": "AdapterL", "adapter_h": "AdapterH",
          "lora": "LoRA"}
TABLE3 = tuple(LABELS)  # the paper's row order
LR = {"ft": 2e-4, "ft_top2": 5e-4, "bitfit": 2e-3, "prefix_embed": 5e-3, "prefix_layer": 2e-3,
      "adapter_l": 1e-3, "adapter_h": 1e-3, "lora": 1e-3}
SIZE_NAME = {"lora": "r", "adapter_h": "r", "adapter_l": "r", "prefix_embed": "l_p + l_i",
             "prefix_layer": "l_p + l_i"}
_COMMON = dict(label_smoothing=0.1, weight_decay=0.01, samples=3)
PRESETS: dict[str, dict] = {
    "ci": dict(train_mrs=8, refs_per_mr=2, dev_mrs=2, test_mrs=3, batch_size=4, steps=2, warmup=1,
               beams=2, gen_batch=3, max_new_tokens=12, log_every=1,
               sizes=dict(prefix_embed=4, prefix_layer=4, adapter_l=4, adapter_h=2, lora=4),
               seeds=dict(lora=(0, 1)),
               sweep=dict(lora=(1, 4), adapter_h=(2, 8), prefix_embed=(4, 8),
                          prefix_layer=(4, 8)), **_COMMON),
    "cpu": dict(train_mrs=300, refs_per_mr=None, dev_mrs=10, test_mrs=30, batch_size=16,
                steps=60, warmup=6, beams=4, gen_batch=30, max_new_tokens=40, log_every=10,
                sizes=dict(prefix_embed=32, prefix_layer=16, adapter_l=8, adapter_h=4, lora=4),
                seeds={}, sweep=dict(lora=(1, 4, 16), adapter_h=(4, 32), prefix_embed=(8, 32),
                                     prefix_layer=(16, 64)), **_COMMON),
    "gpu": dict(train_mrs=1200, refs_per_mr=None, dev_mrs=20, test_mrs=60, batch_size=32,
                steps=160, warmup=16, beams=10, gen_batch=60, max_new_tokens=64, log_every=20,
                sizes=dict(prefix_embed=64, prefix_layer=16, adapter_l=8, adapter_h=4, lora=4),
                seeds=dict(lora=(0, 1, 2), adapter_h=(0, 1, 2), adapter_l=(0, 1, 2)),
                sweep=dict(lora=(1, 4, 16, 64), adapter_h=(4, 32, 256),
                           prefix_embed=(16, 64, 128), prefix_layer=(16, 64, 128)), **_COMMON),
}
BUDGET_S = {"ci": 60, "cpu": 600, "gpu": 240}


def method_kwargs(method: str, size: int | None, separator_ids: list[int], seed: int = 0) -> dict:
    """Settings for :func:`lorakit.baselines.apply_method`.

    ``size`` is the rank r (LoRA, adapters) or the number of special tokens ``l_p + l_i``
    (prefixes: a quarter of them, rounded down, are infix tokens after the separator).
    """
    if method == "lora":
        return dict(r=size, alpha=32, targets=["q", "v"], dropout=0.1)
    if method in ("adapter_h", "adapter_l"):
        return dict(r=size)
    if method in ("prefix_embed", "prefix_layer"):
        l_i = size // 4
        return dict(l_p=size - l_i, l_i=l_i, separator_ids=list(separator_ids), seed=seed)
    return {}


class PromptedGenerator(nn.Module):
    """Lets :func:`lorakit.evaluate.generate_texts` decode with a method's ``prepare_batch``.

    ``generate(input_ids (B, T), attention_mask (B, T))`` inserts the special tokens (B, T + n),
    generates, and returns the prompt as given followed by the new tokens, as HF ``generate``
    does, so the caller's slicing ``out[:, T:]`` still yields only the generated text.
    """

    def __init__(self, model: nn.Module, prepare) -> None:
        super().__init__()
        self.model, self.prepare = model, prepare

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs):
        batch = self.prepare({"input_ids": input_ids, "attention_mask": attention_mask})
        out = self.model.generate(**batch, **kwargs)
        return torch.cat([input_ids, out[:, batch["input_ids"].shape[1]:]], dim=1)


def run_one(base: nn.Module, tokenizer, method: str, size: int | None, seed: int, data: dict,
            settings: dict, device: torch.device) -> dict:
    """Fine-tune a copy of ``base`` with one method and setting, decode the test MRs, score."""
    seed_everything(seed)  # the method's own initialisation (LoRA's A, adapters' down-projection)
    model = copy.deepcopy(base)
    report = apply_method(model, method, **method_kwargs(method, size, data["separator"], seed))
    batches = LengthBucketBatches(data["train_examples"], settings["batch_size"], data["pad_id"],
                                  shuffle=True, seed=seed)
    cfg = TrainConfig(lr=LR[method], weight_decay=settings["weight_decay"], epochs=1,
                      max_steps=settings["steps"], warmup_steps=settings["warmup"],
                      label_smoothing=settings["label_smoothing"], log_every=settings["log_every"],
                      seed=seed, progress=False)
    result = train(model, report.wrap_batches(batches), cfg,
                   eval_batches=report.wrap_batches(data["dev_batches"]), device=device)
    if method == "lora":
        from lorakit.lora import merge_lora

        merge_lora(model)  # decode with ΔW folded into W: no extra latency (paper §4.1)
    test = data["test"]
    start = time.perf_counter()
    hyps = generate_texts(PromptedGenerator(model, report.prepare_batch), tokenizer,
                          [r.mr for r in test], batch_size=settings["gen_batch"],
                          max_new_tokens=settings["max_new_tokens"], num_beams=settings["beams"],
                          device=device)
    gen_s = time.perf_counter() - start
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"method": method, "size": size, "seed": seed, "config": report.config,
            "lr": cfg.lr, "trainable_params": report.trainable, "total_params": report.total,
            "formula": report.formula, "formula_text": report.formula_text,
            "metrics": score_all(hyps, [list(r.refs) for r in test], mrs=[r.mr for r in test]),
            "final_loss": result.history[-1]["loss"], "dev_loss": result.evals[-1]["eval_loss"],
            "steps": result.steps, "train_wall_s": result.wall_s, "generate_wall_s": gen_s,
            "samples": [{"mr": r.mr, "generated": h, "references": list(r.refs[:2])}
                        for r, h in zip(test[:settings["samples"]], hyps)]}


def summarise(runs: list[dict]) -> dict:
    """Mean and (sample) std of each metric over seeds; std is ``None`` for a single seed."""
    out = {"mean": {}, "std": {}}
    for key in runs[0]["metrics"]:
        values = [r["metrics"][key] for r in runs if r["metrics"][key] is not None]
        out["mean"][key] = statistics.fmean(values) if values else None
        out["std"][key] = statistics.stdev(values) if len(values) > 1 else None
    return out


def _prepare_data(tokenizer, settings: dict, max_len: int, source="auto") -> dict:
    def subset(split: str, n: int, refs: int | None):
        records = load_e2e(split, source)[:n]
        return records if refs is None else [type(r)(r.mr, r.refs[:refs]) for r in records]

    train_recs = subset("train", settings["train_mrs"], settings["refs_per_mr"])
    dev_recs = subset("dev", settings["dev_mrs"], settings["refs_per_mr"])
    pad = pad_id_of(tokenizer)
    dev = LengthBucketBatches(make_examples(dev_recs, tokenizer, max_len), 32, pad, shuffle=False)
    return {"train_examples": make_examples(train_recs, tokenizer, max_len), "pad_id": pad,
            "dev_batches": list(dev), "test": subset("test", settings["test_mrs"], None),
            "separator": list(tokenizer(" ||", add_special_tokens=False)["input_ids"]),
            "n_train_mrs": len(train_recs), "n_dev_mrs": len(dev_recs)}


def data_label(src) -> str:
    """A :class:`lorakit.data.sources.DataSource` for a progress line, without this machine's
    paths for the shipped set and the real data's cache (a folder the user gave is shown)."""
    return {"synthetic": "the shipped synthetic E2E set, data/e2e",
            "real": "the real E2E data, from the lorakit cache"}.get(src.kind, str(src))


def plan(settings: dict) -> list[tuple[str, str, int | None, int]]:
    """Every run as ``(part, method, size, seed)``: Table 3 (with seeds), then Figure 2's extra points."""
    jobs = [("table3", m, settings["sizes"].get(m), s) for m in TABLE3
            for s in settings["seeds"].get(m, (0,))]
    jobs += [("figure2", m, size, 0) for m, sizes in settings["sweep"].items() for size in sizes
             if size != settings["sizes"][m]]
    return jobs


def _run_job(ctx: dict, part: str, method: str, size: int | None, seed: int) -> tuple[dict, float]:
    """One run of the grid (in this process or a worker): its result row and its seconds."""
    start = time.perf_counter()
    row = run_one(ctx["base"], ctx["tokenizer"], method, size, seed, ctx["data"], ctx["settings"],
                  ctx["device"])
    return {"part": part, **row}, time.perf_counter() - start


def run_baselines(preset: str | None = None, base_name: str = "auto", device: str | None = None,
                  progress: bool = True, data_root=None, loaded: tuple | None = None,
                  overrides: dict | None = None, source=None, jobs: int = 1) -> dict:
    """The whole experiment; returns ``{"base", "data", "settings", "template", "table3", "figure2",
    "timing"}``.

    ``loaded`` may pass ``(model, tokenizer, info)`` from :func:`lorakit.models.load_base`
    (copied, never changed); else ``base_name`` is loaded. ``overrides`` replaces entries of
    the preset's settings (e.g. ``{"steps": 120}``); unknown keys are an error. ``source``: the
    data (:func:`lorakit.data.sources.data_source`; default ``"auto"``, or ``data_root``, its
    former name for a folder). ``jobs``: runs at once (:func:`lorakit.experiments._jobs.run_jobs`).
    """
    from lorakit.models import load_base

    preset = preset or get_preset()
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; use one of {', '.join(PRESETS)}.")
    unknown = sorted(set(overrides or {}) - set(PRESETS[preset]))
    if unknown:
        raise ValueError(f"Unknown settings {unknown}; choose from {sorted(PRESETS[preset])}.")
    settings, dev = {**PRESETS[preset], **(overrides or {})}, pick_device(device)
    say = print if progress else (lambda *a, **k: None)
    t0 = time.perf_counter()
    src = data_source(source if source is not None else data_root or "auto")
    base, tokenizer, info = loaded if loaded is not None else \
        load_base(base_name, preset=preset, device="cpu", verbose=progress)
    most_special = max([settings["sizes"][m] for m in ("prefix_embed", "prefix_layer")]
                       + [n for m in ("prefix_embed", "prefix_layer")
                          for n in settings["sweep"].get(m, ())])
    max_len = base.config.n_positions - most_special - settings["max_new_tokens"]
    if max_len < 16:
        raise ValueError(f"The base's {base.config.n_positions} positions leave no room for "
                         f"{most_special} special tokens and {settings['max_new_tokens']} new "
                         "tokens; use a base with more positions or smaller prefix sizes.")
    data = _prepare_data(tokenizer, settings, max_len, src)
    timing = {"load_s": time.perf_counter() - t0, "table3_s": 0.0, "figure2_s": 0.0,
              "jobs": jobs}
    grid = plan(settings)
    say(f"[ch07 {preset}] base ready in {timing['load_s']:.1f} s; {len(grid)} runs to do "
        f"(budget {BUDGET_S[preset]} s, {jobs} at a time; {data_label(src)})")

    def report(k: int, job: Job, result: tuple[dict, float]) -> None:
        r, seconds = result
        timing[f"{r['part']}_s"] += seconds
        elapsed = time.perf_counter() - t0
        say(f"[{k:2d}/{len(grid)}] {job.label}: BLEU {r['metrics']['bleu']:.1f}, SER "
            f"{r['metrics']['ser']:.1f}%, train {r['train_wall_s']:.1f} s, decode "
            f"{r['generate_wall_s']:.1f} s | {elapsed:.0f} s "
            "elapsed, projected "
            f"{timing['load_s'] + (elapsed - timing['load_s']) * len(grid) / k:.0f} s")

    todo = [Job(f"{part} {LABELS[method]:8s} size={size} seed={seed}", (part, method, size, seed))
            for part, method, size, seed in grid]
    context = {"base": base, "tokenizer": tokenizer, "data": data, "settings": settings}
    done = [row for row, _ in run_jobs(_run_job, todo, context, jobs, device=device,
                                       on_done=report)]
    timing["total_s"] = time.perf_counter() - t0
    if timing["total_s"] > BUDGET_S[preset]:
        say(f"WARNING: {timing['total_s']:.0f} s exceeds the {preset} budget of "
            f"{BUDGET_S[preset]} s; reduce steps, test_mrs or the sweep.")
    table3 = {}
    for m in TABLE3:
        runs = [r for r in done if r["part"] == "table3" and r["method"] == m]
        keep = ("config", "lr", "trainable_params", "total_params", "formula", "formula_text",
                "size")
        table3[m] = {"label": LABELS[m], **{k: runs[0][k] for k in keep},
                     "seeds": [r["seed"] for r in runs], "runs": runs, **summarise(runs)}
    figure2 = {}
    for m, sizes in settings["sweep"].items():
        points = []
        for size in sizes:
            r = next(r for r in done if r["method"] == m and r["size"] == size and r["seed"] == 0)
            points.append({"size": size, "trainable_params": r["trainable_params"],
                           "formula": r["formula"], "metrics": r["metrics"],
                           "from_table3": r["part"] == "table3"})
        figure2[m] = {"label": LABELS[m], "size_name": SIZE_NAME[m], "points": points}
    return {
        "base": {"source": info.source, "name": info.name, "n_params": info.n_params,
                 "config": info.config, "notice": info.notice},
        "data": {"source": src.kind, "train_mrs": data["n_train_mrs"], "train_pairs": len(data["train_examples"]),
                 "pairs_seen": min(len(data["train_examples"]),
                                   settings["steps"] * settings["batch_size"]),
                 "dev_mrs": data["n_dev_mrs"], "test_mrs": len(data["test"])},
        "settings": {**settings, "lr": LR, "device": dev.type, "budget_s": BUDGET_S[preset],
                     "note": (f"{preset} preset: {settings['steps']} steps of batch "
                              f"{settings['batch_size']} per run (the paper: 5 epochs), "
                              f"{settings['test_mrs']} test MRs, beam {settings['beams']}; sized "
                              f"so that all {len(grid)} runs fit {BUDGET_S[preset]} s")},
        "template": template_row(data["test"]), "table3": table3, "figure2": figure2,
        "timing": timing,
    }


NOT_RECORDED = "not recorded"


def _pm(mean, std, fmt: str) -> str:
    if mean is None:
        return "n/a"
    return format(mean, fmt) + ("" if std is None else " ± " + format(std, fmt))


def _stat(row: dict, key: str, fmt: str) -> str:
    """``row``'s mean ± std of metric ``key``; "not recorded" when a record predates the metric."""
    if key not in row["mean"]:
        return NOT_RECORDED
    return _pm(row["mean"][key], row["std"].get(key), fmt)


def table3_text(results: dict) -> str:
    """Table 3 as text: the template's row, then per method its trainable parameters (and the
    paper's formula), learning rate, seeds, BLEU, ROUGE-L, NIST and SER (%), mean ± std.

    A record made before the slot error rate and the template row existed shows those cells as
    "not recorded".
    """
    head = ("method", "trainable", "formula", "lr", "seeds", "BLEU", "ROUGE-L", "NIST", "SER %")
    metrics = (("bleu", ".1f"), ("rouge_l", ".1f"), ("nist", ".2f"), ("ser", ".1f"))
    template = results.get("template")
    scores = ({"mean": template["metrics"], "std": {}} if template is not None
              else {"mean": {}, "std": {}})
    rows = [head, ("template", "0", "-", "-", "-", *(_stat(scores, k, f) for k, f in metrics))]
    for m, r in results["table3"].items():
        size = "" if r["size"] is None else f" ({SIZE_NAME[m]}={r['size']})"
        rows.append((r["label"] + size, f"{r['trainable_params']:,}",
                     "-" if r["formula"] is None else f"{r['formula']:,}", f"{r['lr']:g}",
                     str(len(r["seeds"])), *(_stat(r, k, f) for k, f in metrics)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))) for row in rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lorakit.experiments baselines",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
    parser.add_argument("--base", default="auto", help="load_base name (default auto)")
    parser.add_argument("--device", type=device, default=None)
    parser.add_argument("--out", type=writable_folder, default=None,
                        help="folder for the record (default data/runs)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="override the preset's steps")
    parser.add_argument("--test-mrs", type=positive_int, default=None, help="override the test MRs")
    parser.add_argument("--data", default="auto",
                        help="auto (default), synthetic, real, or a folder with the splits")
    parser.add_argument("--jobs", type=positive_int, default=1,
                        help="runs at once, each in a worker process (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    preset = args.preset or get_preset()
    overrides = {k: v for k, v in (("steps", args.steps), ("test_mrs", args.test_mrs))
                 if v is not None}
    start = time.perf_counter()
    src = data_source(args.data)
    results = run_baselines(preset, args.base, args.device, progress=not args.quiet,
                            overrides=overrides, source=src, jobs=args.jobs)
    wall = time.perf_counter() - start
    path = save_record(f"ch07_baselines_{preset}", results, preset=preset,
                       config={"base": args.base, "overrides": overrides, "data": args.data,
                               "jobs": args.jobs},
                       wall_s=wall, seed=0, out_dir=args.out, data=src)
    print(table3_text(results))
    print(f"wrote {path} ({wall:.0f} s)")
