"""Chapters 8-9's experiment: which weight matrices and which rank to adapt (paper §7.1-§7.3).

``python -m lorakit.experiments which-rank [--preset P] [--base NAME] [--data SOURCE] [--jobs N]
[--out DIR]``

One set of fine-tunes of GPT-2 on the E2E-style task feeds both chapters, so each configuration
is trained once:

* Table 5: one parameter budget (``r x number of matrices = 8``): {Wq}, {Wk}, {Wv}, {Wo} at r=8,
  {Wq,Wk} and {Wq,Wv} at r=4, all four at r=2; several seeds (mean ± std);
* Table 6: r in {1, 2, 4, 8, 64} for {Wq}, {Wq,Wv} and {Wq,Wk,Wv,Wo}; the rows that Table 5 already
  trained are reused;
* chapter 9: the A and B factors of ΔWq and ΔWv of the {Wq,Wv} runs at r=8 (seed 0) and r=64
  (seeds 0 and 1) for the first, middle and last layer, r=4 for the middle layer, and the base
  weights Wq, Wv of the middle layer, saved small (fp16 A and W, bf16 B) next to the record; the
  subspace analyses (:func:`subspace_analysis`) are computed in full precision and recorded too.

Every run is short: a fixed number of optimizer steps over a subset, with a larger batch than the
paper's (fewer, CPU-bound steps), α = 32 for every r (the paper fixes α and scales by α/r), LoRA
dropout 0.1, label smoothing 0.1. Score: BLEU/ROUGE-L/NIST and the slot error rate (SER, %) of
beam-search decodes (the paper's beam 10 in the ``gpu`` preset) on a test subset; validation loss:
:func:`lorakit.train.evaluate_loss` on dev. The ``template`` entry scores the deterministic
rule-based realizer of :mod:`lorakit.data.template` on the same test MRs: a row of every table.
The ``gpu`` preset has a time budget: extra seeds are skipped (and listed in the record) if the
runs so far say they would not fit, so the whole command stays within 4 minutes on an H200.

Record: ``ch08_which_rank_<preset>.json``; tensors: ``ch09_adapters_<preset>.safetensors``.

``--data``: ``auto`` (default: the real E2E data when it is cached or can be downloaded, else the
shipped synthetic set, with a notice), ``synthetic``, ``real``, or a folder holding the splits;
see :func:`lorakit.data.sources.data_source`. The record stores the source used and the SHA-256
of its files. ``--jobs N``: N fine-tunes at once, each in a worker process (spread over the GPUs
of the host); every run seeds itself, so the record is the one ``--jobs 1`` writes, timings
aside (:mod:`lorakit.experiments._jobs`). The budget then counts wall time with N at once.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import torch

import lorakit
from lorakit.cli import device, positive_int, writable_folder
from lorakit.data import LengthBucketBatches, load_e2e, make_batches, make_examples, pad_id_of
from lorakit.data.sources import data_source
from lorakit.evaluate import generate_texts, score_all
from lorakit.experiments._jobs import Job, run_jobs
from lorakit.experiments._which_rank_report import (  # noqa: F401  (re-exported for the chapters)
    _grid,
    _mean_std,
    _pm,
    _top_rows,
    clear_difference,
    format_claims,
    format_table,
    load_adapters,
    paper_claims,
    save_adapters,
    subspace_analysis,
    summarise,
    weights_label,
)
from lorakit.experiments.baselines import data_label
from lorakit.experiments.finetune import template_row
from lorakit.presets import get_preset, seed_everything
from lorakit.runs import RUNS_DIR, save_record
from lorakit.train import TrainConfig, evaluate_loss, train

ALPHA, DROPOUT, LABEL_SMOOTHING, BUDGET_RANK, R_LOW = 32, 0.1, 0.1, 8, 8
TABLE5 = (("q",), ("k",), ("v",), ("o",), ("q", "k"), ("q", "v"), ("q", "k", "v", "o"))
TABLE6_SETS = (("q",), ("q", "v"), ("q", "k", "v", "o"))
PRESETS: dict[str, dict] = {
    "ci": dict(train_mrs=24, refs_per_mr=2, dev_mrs=4, test_mrs=4, steps=3, batch_size=8,
               lr=2e-3, warmup=1, beams=2, gen_batch=4, max_new_tokens=12,
               ranks=(1, 2, 4, 8, 16), table5_seeds=(0,), budget_s=None),
    "cpu": dict(train_mrs=800, refs_per_mr=None, dev_mrs=40, test_mrs=20, steps=40,
                batch_size=16, lr=2e-3, warmup=4, beams=3, gen_batch=20, max_new_tokens=32,
                ranks=(1, 2, 4, 8, 64), table5_seeds=(0,), budget_s=None),
    "gpu": dict(train_mrs=None, refs_per_mr=None, dev_mrs=200, test_mrs=80, steps=100,
                batch_size=64, lr=1e-3, warmup=10, beams=10, gen_batch=80, max_new_tokens=48,
                ranks=(1, 2, 4, 8, 64), table5_seeds=(0, 1, 2), budget_s=200),
}


def plan_jobs(settings: dict, only_adapters: bool = False) -> list[dict]:
    """The fine-tunes to run, each once: ``{targets, r, seed, required}``, required ones first."""
    r_high = max(settings["ranks"])
    if only_adapters:
        return [dict(targets=("q", "v"), r=r, seed=s, required=True)
                for r, s in ((4, 0), (R_LOW, 0), (r_high, 0), (r_high, 1))]
    first = [(t, BUDGET_RANK // len(t), 0) for t in TABLE5]
    first += [(t, r, 0) for t in TABLE6_SETS for r in settings["ranks"]]
    first.append((("q", "v"), r_high, 1))
    extra = [(t, BUDGET_RANK // len(t), s) for s in settings["table5_seeds"][1:] for t in TABLE5]
    jobs, seen = [], set()
    for required, group in ((True, first), (False, extra)):
        for t, r, s in group:
            if (t, r, s) not in seen:
                seen.add((t, r, s))
                jobs.append(dict(targets=t, r=r, seed=s, required=required))
    return jobs


def adapter_keys(settings: dict, n_layer: int) -> dict[tuple[int, int], list[int]]:
    """``{(r, seed): layers}``: which {Wq,Wv} factors chapter 9 needs from which run."""
    layers = sorted({0, n_layer // 2, n_layer - 1})
    mid, r_high = n_layer // 2, max(settings["ranks"])
    return {(R_LOW, 0): layers, (r_high, 0): layers, (r_high, 1): [mid], (4, 0): [mid]}


def base_weight(model: torch.nn.Module, layer: int, which: str) -> torch.Tensor:
    """GPT-2's frozen ``W_q``/``W_k``/``W_v`` of one layer as a (d, k) = (out, in) matrix.

    HF stores ``attn.c_attn`` as a Conv1D of weight (k, 3d) with q, k, v side by side.
    """
    attn = model.transformer.h[layer].attn.c_attn
    base = getattr(attn, "base", attn)  # under LoRA the Conv1D is wrapped
    d = base.weight.shape[1] // 3
    i = "qkv".index(which)
    return base.weight[:, i * d:(i + 1) * d].T.detach()


def run_config(base, tokenizer, data: dict, targets, r: int, seed: int, settings: dict,
               device: torch.device, score: bool = True, keep_layers=()) -> tuple[dict, dict]:
    """Fine-tune a copy of ``base`` with LoRA on ``targets`` at rank ``r``; evaluate it.

    Returns ``(result, factors)``: a JSON-able dict (trainable params, dev loss, metrics, timing)
    and ``{f"l{layer}.{m}.A"/".B": tensor}`` (fp32, CPU) for m in q, v and each of ``keep_layers``.
    """
    seed_everything(seed)  # LoRA's A init, then dropout and data order below
    model = copy.deepcopy(base)
    lorakit.apply_lora(model, lorakit.LoRAConfig(r=r, alpha=ALPHA, targets=list(targets),
                                                 dropout=DROPOUT))
    trainable, _ = lorakit.count_parameters(model)
    batches = LengthBucketBatches(data["examples"], settings["batch_size"], data["pad_id"],
                                  shuffle=True, seed=seed)
    steps = settings["steps"]
    cfg = TrainConfig(lr=settings["lr"], weight_decay=0.01, epochs=math.ceil(steps / len(batches)),
                      max_steps=steps, warmup_steps=settings["warmup"],
                      label_smoothing=LABEL_SMOOTHING, log_every=max(1, steps // 10), seed=seed,
                      progress=False)
    result = train(model, batches, cfg, device=device)
    out = {"targets": list(targets), "r": r, "seed": seed, "trainable_params": trainable,
           "steps": result.steps, "train_s": result.wall_s,
           "final_train_loss": result.history[-1]["loss"] if result.history else None,
           "dev_loss": evaluate_loss(model, data["dev_batches"], device)}
    factors = {}
    found = lorakit.lora_factors(model)
    for layer in keep_layers:
        for m in ("q", "v"):
            A, B = found[f"transformer.h.{layer}.attn.c_attn.{m}"]
            factors[f"l{layer}.{m}.A"] = A.detach().float().cpu()
            factors[f"l{layer}.{m}.B"] = B.detach().float().cpu()
    if score:
        lorakit.merge_lora(model)
        start = time.perf_counter()
        test = data["test"]
        hyps = generate_texts(model, tokenizer, [x.mr for x in test],
                              batch_size=settings["gen_batch"],
                              max_new_tokens=settings["max_new_tokens"],
                              num_beams=settings["beams"], device=device)
        out["decode_s"] = time.perf_counter() - start
        out.update(score_all(hyps, [list(x.refs) for x in test], mrs=[x.mr for x in test]))
        out["sample"] = {"mr": test[0].mr, "generated": hyps[0]}
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out, factors


def _run_spec(ctx: dict, spec: dict, score: bool, keep) -> tuple[dict, dict]:
    """One fine-tune of the grid (here or in a worker); factors as NumPy arrays for the trip."""
    row, factors = run_config(ctx["base"], ctx["tokenizer"], ctx["data"], spec["targets"],
                              spec["r"], spec["seed"], ctx["settings"], ctx["device"], score=score,
                              keep_layers=keep)
    return row, {name: t.numpy() for name, t in factors.items()}


def _prepare(base, tokenizer, settings: dict, source="auto") -> dict:
    max_len = base.config.n_positions

    def subset(split, n, refs=None):
        recs = load_e2e(split, source)
        recs = recs if n is None else recs[:n]
        return recs if refs is None else [type(x)(x.mr, x.refs[:refs]) for x in recs]

    dev = subset("dev", settings["dev_mrs"], settings["refs_per_mr"])
    return {"examples": make_examples(subset("train", settings["train_mrs"],
                                             settings["refs_per_mr"]), tokenizer, max_len),
            "pad_id": pad_id_of(tokenizer),
            "dev_batches": list(make_batches(dev, tokenizer, 64, max_len, shuffle=False)),
            "test": subset("test", settings["test_mrs"])}


def run_which_rank(preset: str | None = None, base_name: str = "auto", device: str | None = None,
                   progress: bool = True, loaded: tuple | None = None,
                   only_adapters: bool = False, data_root=None, source=None,
                   jobs: int = 1) -> tuple[dict, dict]:
    """The whole experiment. Returns ``(results, tensors)``.

    ``results`` holds ``runs`` (one row per fine-tune), ``table5``, ``table6`` (mean ± std over
    seeds), ``template`` (the template baseline's metrics on the same test MRs, as
    :func:`lorakit.experiments.finetune.template_row`), ``subspace`` (:func:`subspace_analysis`)
    and timing; ``tensors`` the chapter-9 factors and base weights (fp32) named as
    :func:`subspace_analysis` expects. ``loaded`` may pass an
    already loaded ``(model, tokenizer, info)`` (it is copied, never changed). ``only_adapters``:
    just the four {Wq,Wv} runs chapter 9 needs, without decoding (for a quick live run).
    ``source``: the data (:func:`lorakit.data.sources.data_source`; default ``"auto"``, or
    ``data_root``, its former name for a folder). ``jobs``: fine-tunes at once
    (:func:`lorakit.experiments._jobs.run_jobs`).
    """
    from lorakit.models import load_base

    start = time.perf_counter()
    preset = preset or get_preset()
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; use one of {', '.join(PRESETS)}.")
    settings = PRESETS[preset]
    src = data_source(source if source is not None else data_root or "auto")
    base, tokenizer, info = loaded if loaded is not None else \
        load_base(base_name, preset=preset, device="cpu", verbose=progress)
    width, n_layer = base.config.n_embd, base.config.n_layer
    if max(settings["ranks"]) > width:
        raise ValueError(f"Preset {preset!r} trains ranks up to {max(settings['ranks'])} but the "
                         f"base is only {width} wide; use a wider base or a smaller preset.")
    data = _prepare(base, tokenizer, settings, src)
    keys = adapter_keys(settings, n_layer)
    mid = n_layer // 2
    tensors = {f"W.l{mid}.{m}": base_weight(base, mid, m).float().cpu() for m in ("q", "v")}
    grid = plan_jobs(settings, only_adapters)
    index = {id(job): n for n, job in enumerate(grid, 1)}
    rows, skipped, loop_start = [], [], time.perf_counter()

    def over_budget(job: Job) -> bool:
        spec = job.args[0]
        elapsed = time.perf_counter() - start
        mean = (time.perf_counter() - loop_start) / max(len(rows), 1)
        if not (settings["budget_s"] and elapsed + mean > settings["budget_s"]):
            return False
        skipped.append({k: spec[k] for k in ("targets", "r", "seed")})
        print(f"[{index[id(spec)]:2d}/{len(grid)}] skipped {weights_label(spec['targets'])} "
              f"r={spec['r']} seed {spec['seed']}: would exceed the {settings['budget_s']} s "
              "budget")
        return True

    def report(k: int, job: Job, result: tuple[dict, dict]) -> None:
        row = result[0]
        rows.append(row)
        if progress:
            score = (f", BLEU {row['bleu']:.1f}, SER {row['ser']:.1f}%, decode "
                     f"{row['decode_s']:.1f} s") if "bleu" in row else ""
            print(f"[{k:2d}/{len(grid)}] {job.label:24s}: train {row['train_s']:.1f} s, dev loss "
                  f"{row['dev_loss']:.3f}{score} ({time.perf_counter() - start:.0f} s so far)")

    todo = []
    for spec in grid:
        keep = keys.get((spec["r"], spec["seed"]), []) if spec["targets"] == ("q", "v") else []
        label = f"{weights_label(spec['targets'])} r={spec['r']} seed {spec['seed']}"
        todo.append(Job(label, (spec, not only_adapters, keep), spec["required"]))
    context = {"base": base, "tokenizer": tokenizer, "data": data, "settings": settings}
    if progress:
        print(f"[ch08 {preset}] {len(grid)} fine-tunes, {jobs} at a time; {data_label(src)}")
    results = run_jobs(_run_spec, todo, context, jobs, device=device, skip=over_budget,
                       on_done=report)
    rows = [res[0] for res in results if res is not None]  # in the order of the plan
    for spec, res in zip(grid, results):
        for name, array in ({} if res is None else res[1]).items():
            tensors[f"qv.r{spec['r']}.s{spec['seed']}.{name}"] = torch.from_numpy(array)
    meta = {"layers": keys[(R_LOW, 0)], "analysis_layer": mid, "r_low": R_LOW,
            "r_high": max(settings["ranks"]), "r_table7": [4, max(settings["ranks"])],
            "alpha": ALPHA}
    results = {
        "base": {"source": info.source, "name": info.name, "n_params": info.n_params,
                 "config": info.config, "notice": info.notice},
        "data": {"source": src.kind, "train_pairs": len(data["examples"]),
                 "test_mrs": len(data["test"])},
        "settings": {**settings, "alpha": ALPHA, "dropout": DROPOUT,
                     "label_smoothing": LABEL_SMOOTHING, "budget_rank": BUDGET_RANK},
        "runs": rows, "skipped": skipped, "adapters": meta, "template": template_row(data["test"]),
        "table5": [] if only_adapters else
        [summarise(rows, t, BUDGET_RANK // len(t)) for t in TABLE5],
        "table6": [] if only_adapters else
        [summarise(rows, t, r) for t in TABLE6_SETS for r in settings["ranks"]],
        "subspace": subspace_analysis(tensors, meta),
        "timing": {"total_s": time.perf_counter() - start, "jobs": jobs,
                   "train_s": sum(x["train_s"] for x in rows),
                   "decode_s": sum(x.get("decode_s", 0.0) for x in rows)},
    }
    return results, tensors




def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lorakit.experiments which-rank",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
    parser.add_argument("--base", default="auto", help="load_base name (default auto)")
    parser.add_argument("--device", type=device, default=None)
    parser.add_argument("--out", type=writable_folder, default=None,
                        help="folder for the record (default data/runs)")
    parser.add_argument("--data", default="auto",
                        help="auto (default), synthetic, real, or a folder with the splits")
    parser.add_argument("--jobs", type=positive_int, default=1,
                        help="fine-tunes at once, each in a worker process (default 1)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    preset = args.preset or get_preset()
    start = time.perf_counter()
    src = data_source(args.data)
    results, tensors = run_which_rank(preset, args.base, args.device, not args.no_progress,
                                      source=src, jobs=args.jobs)
    out = Path(args.out) if args.out else RUNS_DIR
    results["adapters_file"] = save_adapters(tensors, results["adapters"],
                                             out / f"ch09_adapters_{preset}.safetensors").name
    wall = time.perf_counter() - start
    path = save_record(f"ch08_which_rank_{preset}", results, preset=preset,
                       config={"base": args.base, "data": args.data, "jobs": args.jobs},
                       wall_s=wall, seed=0, out_dir=out, data=src)
    print("Table 5 (one budget):\n" + format_table(results["table5"], results["template"]))
    print("Table 6 (ranks):\n" + format_table(results["table6"], results["template"]))
    print(f"wrote {path} and {results['adapters_file']} ({wall:.0f} s)")
