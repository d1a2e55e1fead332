"""The fine-tuning step a learner runs: ``lorakit.train.train`` against PEFT on E2E-shaped batches.

``python -m lorakit.bench e2e-step [--out DIR|FILE.json] [--steps N] [--small --device cpu]``

Every row trains the same model (GPT-2 small's architecture: 12 layers, width 768, vocabulary
16,384, as the offline base) on the same batches with the same loop, :func:`lorakit.train.train`:
the same loss, fused AdamW, gradient clipping, bf16 autocast, dropout 0.1. Only the method and
how the step runs differ:

* ``lorakit_default``: LoRA r = 4 on Wq, Wv, ``train``'s default on a GPU (steps replayed as CUDA
  graphs, the LoRA layers' fused path inside them);
* ``lorakit_eager``: the same with ``cuda_graphs=False`` (the layer's plain formula, eagerly);
* ``lorakit_compile``: eager with ``TrainConfig(compile=True)`` (``torch.compile`` of the
  backbone);
* ``peft_eager`` / ``peft_compile``: PEFT's LoRA r = 4 on GPT-2's fused ``c_attn`` (q, k and v:
  PEFT cannot adapt q and v alone), eager and compiled;
* ``full_eager`` / ``full_default``: full fine-tuning, eager and with CUDA graphs;
* ``lorakit_deterministic`` / ``full_deterministic``: the default step with
  ``TrainConfig(deterministic=True)`` (PyTorch's deterministic kernels, as the offline base and the
  experiments train), beside ``lorakit_default`` and ``full_default`` for what it costs.

The batches are those of the E2E task: examples of 40-100 tokens (a prompt of about 25), batched
8 at a time by :class:`lorakit.data.LengthBucketBatches`, so lengths vary from batch to batch
as in real training. A row's step time is the median over logged windows of ``log_every``
steps, leaving out the first two windows (compilation, graph capture, warm-up); its peak memory
is ``torch.cuda.max_memory_allocated`` over the run. The ratios the goals are stated in come from
this one run.

An eager step is bound by the host (Python and kernel launches), and its time drifts with what
the process did before (the same eager row can take nearly twice as long in one place of the
order as in another). So the uncompiled rows run in ``--rounds`` rounds, each in a
rotated order, with a fresh model each time; a row's step time is the median over its rounds, a
ratio of two such rows is the median of the per-round ratios (a paired estimate: drift that both
rows of a round share cancels), and the record keeps every round. With two rows, rotation
alternates AB, BA, ... so each pair runs back to back (``--rows lorakit_eager peft_eager
--rounds 6``). Compiled rows run once (each compile costs a minute or more).

The eager goal compares two host-bound steps whose difference is smaller than that drift, and a
row's first run in a process also pays for what the process meets the first time (each new batch
shape's matmul set-up, for one). So it is timed once more, in ``--pairs`` pairs of blocks: one
lorakit and one PEFT model stay alive, each first trains one untimed block, then the two alternate
blocks of ``block_steps`` steps (AB, BA, AB, ...) on the same batches; a block's time is
``TrainResult.step_time_s`` (its steps after the first), and a pair's ratio is lorakit's block over
PEFT's. On a GPU the block that runs second in a pair can be faster, whichever row it is (the
record's ``position_effect``), so a pair's ratio leans towards the row that ran second. Two
consecutive pairs, AB then BA, form a couple whose ratio is the geometric mean of their two ratios:
a position effect that multiplies the second block's time by ``g`` enters one pair as ``g`` and the
other as ``1/g`` and cancels. The goal's value is the median over the couples (over the pairs when
there are fewer than two); the record keeps the pairs, the couples, the median over the pairs and
the position effect it measured (the geometric mean over the couples of ``sqrt(r_AB / r_BA)``: > 1
when the second block is faster). The rounds' estimate stays in the record as ``rounds_value``.

Every round of a row trains the same model from the same weights on the same batches, so its
rounds should end at the same loss. The record keeps each round's final loss and says whether they
are all equal (``repeats``): on a GPU the deterministic rows should, and the others need not.
"""

from __future__ import annotations

import copy
import gc
import math
import random
import statistics
import time

import torch

import lorakit
from lorakit.bench import bench_parser, bench_settings, parse_bench_args, save_bench_record
from lorakit.bench._models import TINY_GPT2, peft_lora
from lorakit.cli import nonnegative_int, positive_int
from lorakit.data import Example, LengthBucketBatches
from lorakit.presets import pick_device
from lorakit.train import TrainConfig, train

ROWS = (
    "lorakit_default",
    "lorakit_eager",
    "lorakit_compile",
    "peft_eager",
    "peft_compile",
    "full_eager",
    "full_default",
    "lorakit_deterministic",
    "full_deterministic",
)
# GPT-2 small's shape with a 16k vocabulary, and a tiny GPT-2 for --small
GPT2_SMALL_16K = dict(n_layer=12, n_embd=768, n_head=12, n_positions=1024, vocab_size=16384)
FULL = dict(
    arch=GPT2_SMALL_16K,
    batch=8,
    steps=240,
    log_every=20,
    examples=4000,
    rounds=3,
    pairs=12,
    block_steps=80,
)
SMALL = dict(
    arch=TINY_GPT2, batch=4, steps=12, log_every=2, examples=60, rounds=1, pairs=0, block_steps=4
)
#: the rows the paired blocks time (the eager goal's numerator and denominator)
PAIRED = ("lorakit_eager", "peft_eager")
LORA = dict(r=4, alpha=32, dropout=0.1)
# (key, numerator, denominator, label, limit)
GOALS = (
    (
        "default_vs_peft_eager",
        "lorakit_default",
        "peft_eager",
        "lorakit.train's default step / PEFT LoRA eager step",
        0.30,
    ),
    (
        "eager_vs_peft_eager",
        "lorakit_eager",
        "peft_eager",
        "lorakit eager (graphs off) / PEFT eager",
        1.00,
    ),
    (
        "compile_vs_peft_compile",
        "lorakit_compile",
        "peft_compile",
        "lorakit + torch.compile / PEFT + torch.compile",
        1.00,
    ),
)
EXTRA = (
    (
        "default_vs_full_default",
        "lorakit_default",
        "full_default",
        "LoRA / full fine-tuning, both with lorakit.train's default",
    ),
    (
        "full_default_vs_full_eager",
        "full_default",
        "full_eager",
        "full fine-tuning: CUDA graphs / eager",
    ),
    ("eager_vs_default", "lorakit_eager", "lorakit_default", "LoRA: eager / CUDA graphs"),
    (
        "deterministic_vs_default",
        "lorakit_deterministic",
        "lorakit_default",
        "LoRA: deterministic kernels / default (both lorakit.train's default step)",
    ),
    (
        "full_deterministic_vs_full_default",
        "full_deterministic",
        "full_default",
        "full fine-tuning: deterministic kernels / default",
    ),
)


def e2e_examples(n: int, vocab: int, seed: int = 0) -> list[Example]:
    """``n`` token sequences shaped like E2E examples: 40-100 tokens, the first ~25 a prompt."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length, prompt = rng.randint(40, 100), rng.randint(18, 32)
        out.append(Example(tuple(rng.randrange(1, vocab) for _ in range(length)), prompt))
    return out


def prepare(row: str, arch: dict, device: torch.device):
    """A fresh model for ``row`` (same initial weights for every row) and its TrainConfig flags."""
    from lorakit.models.gpt2 import build_gpt2

    model = build_gpt2(**arch, dropout=0.1, seed=0, device=device).train()
    method, mode = row.split("_")
    if method == "lorakit":
        lorakit.apply_lora(model, lorakit.LoRAConfig(targets=["q", "v"], **LORA))
    elif method == "peft":
        peft_lora(model, LORA, ["c_attn"])
    flags = {
        "default": dict(cuda_graphs="auto"),
        "eager": dict(cuda_graphs=False),
        "compile": dict(cuda_graphs=False, compile=True),
        "deterministic": dict(cuda_graphs="auto", deterministic=True),
    }[mode]
    return model, flags


def _dynamo_counts() -> dict:
    """What ``torch.compile`` did in this row: graphs compiled, graph breaks, recompiles."""
    from torch._dynamo.utils import counters

    return {
        "unique_graphs": int(counters["stats"].get("unique_graphs", 0)),
        "graph_breaks": int(sum(counters["graph_break"].values())),
        "recompiles": int(sum(counters["recompiles"].values())),
    }


def _config(row: str, steps: int, log_every: int, flags: dict) -> TrainConfig:
    return TrainConfig(
        lr=2e-4 if not row.startswith("full") else 5e-5,
        max_steps=steps,
        epochs=100,
        warmup_steps=10,
        label_smoothing=0.1,
        log_every=log_every,
        progress=False,
        **flags,
    )


def run_row(row: str, settings: dict, batches, device: torch.device) -> dict:
    model, flags = prepare(row, settings["arch"], device)
    if flags.get("compile"):
        torch._dynamo.reset()  # each compiled row starts from an empty cache and counters
        from torch._dynamo.utils import counters

        counters.clear()
    cfg = _config(row, settings["steps"], settings["log_every"], flags)
    batches.epoch = 0  # every row sees the same batches in the same order
    start = time.perf_counter()
    result = train(model, batches, cfg, device=device)
    wall = time.perf_counter() - start
    windows = [h["seconds"] / settings["log_every"] for h in result.history[2:]] or [
        result.wall_s / max(result.steps, 1)
    ]
    out = {
        "step_ms": 1000 * statistics.median(windows),
        "step_ms_spread": [1000 * min(windows), 1000 * max(windows)],
        "peak_mem_mb": result.peak_mem_mb,
        "steps": result.steps,
        "wall_s": wall,
        "final_loss": result.history[-1]["loss"],
        "cuda_graphs": result.cuda_graphs,
        "trainable_params": lorakit.count_parameters(model)[0],
    }
    if flags.get("compile"):
        out["dynamo"] = _dynamo_counts()
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def _merge_rounds(runs: list[dict]) -> dict:
    """One row's record from its rounds: the median step time over rounds, every round kept."""
    out = dict(runs[-1])
    if len(runs) > 1:
        out["step_ms"] = statistics.median(r["step_ms"] for r in runs)
        out["step_ms_rounds"] = [r["step_ms"] for r in runs]
        out["peak_mem_mb"] = max((r["peak_mem_mb"] or 0) for r in runs) or None
        out["final_loss_rounds"] = [r["final_loss"] for r in runs]
        out["repeats"] = len({r["final_loss"] for r in runs}) == 1
    return out


def run_rows(names: list[str], settings: dict, batches, device: torch.device) -> dict:
    """Every row of ``names``; the uncompiled ones in ``settings["rounds"]`` rotated rounds."""
    rows, runs = {}, {}
    try:
        import peft  # noqa: F401
    except ImportError:
        rows.update(
            {r: {"skipped": "peft is not installed"} for r in names if r.startswith("peft")}
        )
    todo = [r for r in names if r not in rows]
    for k in range(settings["rounds"]):
        order = todo[k % len(todo) :] + todo[: k % len(todo)] if todo else []
        for row in order:
            if k and row.endswith("compile"):
                continue
            runs.setdefault(row, []).append(run_row(row, settings, copy.copy(batches), device))
            print(
                f"round {k + 1}: {row:16s} {runs[row][-1]['step_ms']:7.2f} ms/step  peak "
                f"{runs[row][-1]['peak_mem_mb'] or 0:7.0f} MiB  graphs "
                f"{runs[row][-1]['cuda_graphs']}",
                flush=True,
            )
    rows.update({row: _merge_rounds(runs[row]) for row in todo})
    return {row: rows[row] for row in names}


def run_pairs(settings: dict, batches, device: torch.device, rows=PAIRED) -> dict:
    """The rows ``rows`` (numerator, denominator) timed in alternating blocks on live models.

    Each model first trains one untimed block; then pair ``k`` trains one block of each, in the
    order AB for even ``k`` and BA for odd ``k``, both on the batches of epoch ``k``. Returns the
    block times (ms/step), each pair's ratio and their median.
    """
    steps = settings["block_steps"]
    models = {row: prepare(row, settings["arch"], device) for row in rows}

    def block(row: str, epoch: int) -> float:
        model, flags = models[row]
        run = copy.copy(batches)
        run.epoch = epoch
        result = train(model, run, _config(row, steps, steps, flags), device=device)
        return 1000 * (result.step_time_s or result.wall_s / max(result.steps, 1))

    for row in rows:  # untimed: what each model meets the first time is paid here
        block(row, 0)
    pairs = []
    for k in range(settings["pairs"]):
        order = rows if k % 2 == 0 else rows[::-1]
        ms = {row: block(row, k + 1) for row in order}
        pairs.append({"first": order[0], **{f"{row}_ms": ms[row] for row in rows}})
        pairs[-1]["ratio"] = ms[rows[0]] / ms[rows[1]]
        print(
            f"pair {k + 1}: " + "  ".join(f"{row} {ms[row]:6.2f} ms" for row in order),
            f" ratio {pairs[-1]['ratio']:.3f}",
            flush=True,
        )
    models.clear()
    gc.collect()
    return {"rows": list(rows), "block_steps": steps, "pairs": pairs, **summarize_pairs(pairs)}


def summarize_pairs(pairs: list[dict]) -> dict:
    """The goal's estimate from the pairs of :func:`run_pairs` (ratios in AB, BA, AB, ... order).

    Pairs ``2j`` (AB) and ``2j + 1`` (BA) make couple ``j``, whose ratio ``sqrt(r_AB · r_BA)``
    cancels a position effect that scales the second block of every pair by one factor.
    Returns ``median_ratio`` (the goal's value: the median over the couples, or over the pairs
    when there is no couple), ``pairs_median`` (the median over the pairs), ``couples`` (each
    couple's ratio) and ``position_effect`` (how much faster the block that runs second is:
    the geometric mean over the couples of ``sqrt(r_AB / r_BA)``; ``None`` without a couple).
    """
    ratios = [p["ratio"] for p in pairs]
    ab_ba = list(zip(ratios[0::2], ratios[1::2]))
    couples = [math.sqrt(ab * ba) for ab, ba in ab_ba]
    pairs_median = statistics.median(ratios) if ratios else None
    effect = None
    if ab_ba:
        effect = math.exp(statistics.fmean(0.5 * math.log(ab / ba) for ab, ba in ab_ba))
    return {
        "median_ratio": statistics.median(couples) if couples else pairs_median,
        "estimate": "median over the AB/BA couples" if couples else "median over the pairs",
        "pairs_median": pairs_median,
        "couples": couples,
        "position_effect": effect,
    }


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser("e2e-step", __doc__, "a tiny model (seconds, any device)")
    parser.add_argument("--steps", type=positive_int, default=None)
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=None,
        help="rounds of the uncompiled rows, each in a rotated order (default 3)",
    )
    parser.add_argument(
        "--pairs",
        type=nonnegative_int,
        default=None,
        help="pairs of alternating eager blocks that time the eager goal (default 12; 0: none, "
        "the goal then comes from the rounds)",
    )
    parser.add_argument(
        "--block-steps", type=positive_int, default=None, help="steps in one block (default 80)"
    )
    args = parse_bench_args(parser, "e2e_step", argv)
    start = time.perf_counter()
    settings = bench_settings(args, FULL, SMALL, ("steps", "rounds", "pairs", "block_steps"))
    device = pick_device(args.device)
    batches = LengthBucketBatches(
        e2e_examples(settings["examples"], settings["arch"]["vocab_size"]),
        settings["batch"],
        pad_id=0,
        shuffle=True,
        seed=0,
    )
    rows = run_rows(args.rows, settings, batches, device)
    paired = None
    if settings["pairs"] and all("step_ms" in rows.get(r, {}) for r in PAIRED):
        paired = run_pairs(settings, batches, device)
    ratios = {}
    for key, num, den, label, *limit in GOALS + EXTRA:
        if "step_ms" in rows.get(num, {}) and "step_ms" in rows.get(den, {}):
            value = rows[num]["step_ms"] / rows[den]["step_ms"]
            ratios[key] = {"label": label, "value": value}
            per_round = zip(
                rows[num].get("step_ms_rounds", []), rows[den].get("step_ms_rounds", [])
            )
            if by_round := [a / b for a, b in per_round]:  # the same round: the same conditions
                # paired: each round's ratio cancels the drift the two rows share
                ratios[key].update(
                    value=statistics.median(by_round), rounds=by_round, ratio_of_medians=value
                )
                value = ratios[key]["value"]
            if paired is not None and (num, den) == PAIRED:
                ratios[key].update(
                    value=paired["median_ratio"],
                    rounds_value=value,
                    estimate=paired["estimate"],
                )
                value = paired["median_ratio"]
            if limit:
                ratios[key].update(goal=f"<= {limit[0]}", met=value <= limit[0])
    for r in ratios.values():
        met = (
            ""
            if "met" not in r
            else ("  goal " + r["goal"] + (": met" if r["met"] else ": NOT met"))
        )
        print(f"{r['label']}: {r['value']:.3f}{met}")
    results = {
        "settings": {k: v for k, v in settings.items()},
        "lora": LORA,
        "device": str(device),
        "rows": rows,
        "ratios": ratios,
        "paired_blocks": paired,
    }
    path = save_bench_record("e2e_step", args, results, start)
    print(f"wrote {path}")
