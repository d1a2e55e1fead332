"""Inference latency of adapters against LoRA: the paper's Table 1 (section 3).

``python -m lorakit.bench latency`` times one forward pass of the GPT-2 medium architecture
(random weights, ``GPT2Config`` defaults with 24 layers of width 1024; fp16 on a GPU by default,
``--dtype bf16`` or ``fp32`` to change it) at batch x sequence 1x128, 16x256 and 32x512 for:

* ``base``          the model as it is;
* ``base_again``    a second copy of the base, timed as one more method: the A/A control. Its
                    ratio to the base says how far from 1 timing alone puts two equal models,
                    and the claims count that distance as noise;
* ``adapter_l``     one adapter per block (Lin et al.), bottleneck ``--adapter-r``;
* ``adapter_h``     two adapters per block (Houlsby et al.);
* ``lora_merged``   LoRA on Wq, Wv (rank ``--lora-r``) folded into the weights: no extra work;
* ``lora_unmerged`` the same LoRA kept as a separate branch;
* ``prefix_layer``  ``--prefix`` special tokens per sequence: the cost of a longer sequence.

Two ways to run each forward, side by side: **eager** (PyTorch launches every kernel from Python,
as the paper's measurement did) and, on a GPU, replayed as a **CUDA graph** (captured once; one
launch per pass, so what remains is the GPU's own work; the host's launch cost, which dominates
at batch 1 on a fast GPU, is gone). Each cell is the **median** of ``--trials`` passes (100 by
default) after ``--warmup`` passes, each timed with CUDA events between two synchronisations
(wall clock on a CPU), with its interquartile range; the methods take turns in rounds of
:data:`ROUND` passes (the order rotating each round), so that a drift of the clock or of the
GPU's temperature touches them all alike. A ratio is the method's median over the base's median
at the same shape and mode. The JSON record goes to ``data/runs/bench/latency.json`` (or
``--out DIR`` / ``--out FILE.json``). ``--small --device cpu`` runs a tiny model in seconds; its
record goes to a temporary folder unless ``--out`` is given, and never replaces a full-size one.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

from lorakit.baselines import apply_method
from lorakit.bench import bench_parser, bench_settings, parse_bench_args, save_bench_record
from lorakit.bench._latency_report import (  # noqa: F401  (the claims table reads it here)
    NOT_RECORDED,
    claim_rows,
    claims,
    format_table,
    is_current,
    recorded_ratios,
    summary,
)
from lorakit.bench._models import GPT2_MEDIUM, TINY_GPT2
from lorakit.bench._timing import Timer
from lorakit.cli import nonnegative_int, positive_int
from lorakit.lora import merge_lora
from lorakit.lora.fast import set_fast_path
from lorakit.models.gpt2 import build_gpt2
from lorakit.presets import pick_device

METHODS = (
    "base",
    "base_again",
    "adapter_l",
    "adapter_h",
    "lora_merged",
    "lora_unmerged",
    "prefix_layer",
)
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
ROUND = 10  # passes per method per round
FULL = {
    "arch": GPT2_MEDIUM,
    "shapes": [(1, 128), (16, 256), (32, 512)],
    "trials": 100,
    "warmup": 10,
}
SMALL = {
    "arch": TINY_GPT2,
    "shapes": [(1, 16), (4, 32)],
    "trials": 5,
    "warmup": 2,
}


def build_base(arch: dict, device: torch.device, dtype: torch.dtype, seed: int = 0) -> nn.Module:
    """A GPT-2 of the given shape with random weights, in eval mode, SDPA attention."""
    return build_gpt2(**arch, seed=seed, device=device).to(dtype).eval()


def make_variant(base: nn.Module, method: str, args: argparse.Namespace):
    """A copy of ``base`` with ``method`` applied: ``(model, prepare_batch, trainable_params)``."""
    model = copy.deepcopy(base)
    if method in ("base", "base_again"):
        return model, None, 0
    if method in ("adapter_l", "adapter_h"):
        report = apply_method(model, method, r=args.adapter_r)
    elif method.startswith("lora"):
        report = apply_method(
            model, "lora", r=args.lora_r, alpha=2 * args.lora_r, targets=["q", "v"]
        )
        set_fast_path(model, True)  # unmerged: the branch as one fused node (lorakit.lora.fast)
        if method == "lora_merged":
            merge_lora(model)
    elif method == "prefix_layer":
        report = apply_method(model, "prefix_layer", l_p=args.prefix, l_i=0)
        return model.eval(), report.prepare_batch, report.trainable
    else:
        raise ValueError(f"Unknown method {method!r}; choose from {', '.join(METHODS)}.")
    return model.eval(), None, report.trainable


class Forward:
    """One forward pass of ``model`` on ``ids`` (B, T) to time: eagerly, or as a CUDA graph
    captured once (after a few passes on a side stream, as PyTorch asks) and replayed."""

    def __init__(self, model: nn.Module, ids: torch.Tensor, graph: bool) -> None:
        self.model, self.ids, self.graph = model, ids, None
        if graph:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.inference_mode():
                for _ in range(3):
                    self._eager()
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph), torch.inference_mode():
                self.out = self._eager()

    def _eager(self):
        return self.model(input_ids=self.ids, use_cache=False).logits

    @torch.inference_mode()
    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self._eager()


def time_rounds(
    calls: dict[str, Forward], trials: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Milliseconds of ``trials`` passes of each call, after ``warmup`` untimed ones, the calls
    taking turns in rounds of :data:`ROUND` passes with the order rotated every round."""
    timer = Timer(device)
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    k = 0
    while min(len(t) for t in times.values()) < trials:
        order = names[k % len(names) :] + names[: k % len(names)]
        for name in order:
            for _ in range(min(ROUND, trials - len(times[name]))):
                times[name].append(timer.time(calls[name]))
        k += 1
    return times


def run(args: argparse.Namespace) -> dict:
    """Measure every (method, shape, mode) cell; returns the results dict that is recorded."""
    setup = bench_settings(args, FULL, SMALL, ("shapes", "trials", "warmup"))
    device = pick_device(args.device)
    dtype_name = args.dtype or ("fp16" if device.type == "cuda" else "fp32")
    shapes, trials, warmup = setup["shapes"], setup["trials"], setup["warmup"]
    modes = ["eager"] + (["graph"] if device.type == "cuda" and not args.no_graphs else [])
    max_len = setup["arch"]["n_positions"]
    for _, T in shapes:
        if T + (args.prefix if "prefix_layer" in args.methods else 0) > max_len:
            raise ValueError(f"Sequence {T} (+ prefix) exceeds the model's {max_len} positions.")
    base = build_base(setup["arch"], device, DTYPES[dtype_name])
    variants = {m: make_variant(base, m, args) for m in args.methods}
    del base
    gen = torch.Generator().manual_seed(0)
    cells: dict[str, dict[str, dict]] = {}
    for B, T in shapes:
        ids = torch.randint(0, setup["arch"]["vocab_size"], (B, T), generator=gen)
        inputs = {
            m: (ids if p is None else p({"input_ids": ids})["input_ids"]).to(device)
            for m, (_, p, _) in variants.items()
        }
        row = {m: {"seq_len": inputs[m].shape[1]} for m in variants}
        for mode in modes:
            calls = {
                m: Forward(model, inputs[m], mode == "graph")
                for m, (model, _, _) in variants.items()
            }
            for m, ms in time_rounds(calls, trials, warmup, device).items():
                row[m][mode] = summary(ms)
            del calls
            if device.type == "cuda":
                torch.cuda.empty_cache()
        for mode in modes:
            ref = row["base"][mode]["median_ms"] if "base" in row else None
            for cell in row.values():
                cell[mode]["ratio"] = cell[mode]["median_ms"] / ref if ref else None
        cells[f"{B}x{T}"] = row
    return {
        "dtype": dtype_name,
        "device_type": device.type,
        "trials": trials,
        "warmup": warmup,
        "round": ROUND,
        "modes": modes,
        "statistic": "median",
        "arch": setup["arch"],
        "added_params": {m: v[2] for m, v in variants.items()},
        "cells": cells,
        "settings": {
            "adapter_r": args.adapter_r,
            "lora_r": args.lora_r,
            "lora_targets": ["q", "v"],
            "prefix": args.prefix,
        },
    }


def _shape(text: str) -> tuple[int, int]:
    try:
        b, t = (int(x) for x in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"shape {text!r} must look like 16x256 (batch x seq)"
        ) from err
    if b < 1 or t < 1:
        raise argparse.ArgumentTypeError(f"shape {text!r} needs batch >= 1 and seq >= 1")
    return b, t


def main(argv: list[str] | None = None) -> None:
    p = bench_parser("latency", __doc__, "tiny model and shapes: a seconds-long smoke run")
    p.add_argument(
        "--dtype", choices=sorted(DTYPES), default=None, help="default fp16 on CUDA, fp32 elsewhere"
    )
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument(
        "--shapes", nargs="+", type=_shape, default=None, help="e.g. 1x128 16x256 32x512"
    )
    p.add_argument(
        "--trials",
        type=positive_int,
        default=None,
        help="timed passes per cell (default 100; 5 with --small)",
    )
    p.add_argument("--warmup", type=nonnegative_int, default=None)
    p.add_argument("--no-graphs", action="store_true", help="time eager passes only")
    p.add_argument(
        "--adapter-r", type=positive_int, default=64, help="adapter bottleneck (default 64)"
    )
    p.add_argument("--lora-r", type=positive_int, default=4)
    p.add_argument(
        "--prefix", type=positive_int, default=16, help="prefix_layer special tokens (default 16)"
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch CPU threads (1 gives steadier CPU timings on a busy machine)",
    )
    args = parse_bench_args(p, "latency", argv)
    if "base" not in args.methods:
        args.methods = ["base", *args.methods]  # every ratio is relative to the base
    if args.trials is not None and args.trials < 2:
        p.error("--trials must be >= 2 (a spread needs two samples)")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results = run(args)
    path = save_bench_record("latency", args, results, start)
    print(format_table(results))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
