"""Training-step time and peak memory: LoRA against full fine-tuning and against PEFT's LoRA.

``python -m lorakit.bench train-step`` steps, in one process, the GPT-2 medium architecture
(random weights: 24 layers, width 1024, vocab 50,257; :func:`lorakit.models.gpt2.build_gpt2`),
batch 8, sequence 512, fp32 master weights with bf16 autocast, for the variants of
:data:`VARIANTS`:

* ``full``         every weight trains (``lorakit.baselines.apply_method(model, "ft")``);
* ``lorakit_qv``   lorakit LoRA on Wq, Wv (slices of the fused ``c_attn``; the paper's setting),
  on the fused path (:func:`lorakit.lora.fast.set_fast_path`);
* ``lorakit_qkv``  lorakit LoRA on Wq, Wk, Wv;
* ``peft_qkv``     PEFT's LoRA on ``c_attn`` (all of q, k, v: PEFT cannot take slices);
* ``floor``        every weight frozen except the position embedding: backward still runs through
  every layer but computes input gradients only. It is the step of a LoRA whose branch cost
  nothing, so ``step - floor`` (``branch_ms``) is what a LoRA implementation adds;
* ``*_frozen_bf16`` the LoRA variants and the floor again with the frozen weights stored in bf16
  (:func:`lorakit.cast_frozen_`): the same computation under autocast, less memory, fewer casts.
  The PEFT variants are skipped with a note when ``peft`` is not installed.

Every variant gets the same model options (dropout, SDPA attention, GELU kernel), the same batch,
the same loss (:func:`lorakit.train.causal_lm_loss`, label positions found once on the CPU,
label smoothing 0.1), the same optimizer (AdamW, fused and capturable on CUDA, lr 2e-4, weight
decay 0.01 on matrices: :func:`lorakit.train.loop.param_groups`) and gradient clipping; only the
set of trainable weights and the layer implementation differ. LoRA: r = 4, α = 32, dropout 0.1.

Two modes, both measured in the same run (``--modes``): ``eager``, plain PyTorch, where each
kernel of a step is launched from Python (when the host cannot launch them as fast as the GPU
runs them the step is *launch-bound*: its time measures the host, and a LoRA step is barely
faster than a full one although it skips a third of the matmul work); and ``graph``, the whole
step (forward, backward, clipping, AdamW) captured once in a CUDA graph
(:class:`lorakit.train.graph.CUDAGraphStep`) and replayed, so that the step costs what the GPU
needs for it. The goals are judged on the graph steps when they were measured (on CUDA), on the
eager ones otherwise; the record says which (``goal_mode``) and keeps both.

How it measures (:mod:`lorakit.bench._timing`). Time: every model is built up front; each gets
``--warmup`` untimed steps; then ``--rounds`` rounds, in each of which every (mode, variant) runs
``--steps`` steps in turn (the order rotates from round to round), so that a slow spell of the
machine hits all alike. A round's
time per step comes from CUDA events around the whole round; a variant's ``step_ms`` is the
median over rounds. Memory: a separate pass, one variant at a time alone on the device, stepped
eagerly, then ``max_memory_allocated`` (weights, gradients, optimizer state and activations).

The ratios, goals and the printed table are :mod:`lorakit.bench._train_step_report`'s. Written to
``data/runs/bench/train_step.json`` (or ``--out DIR`` / ``--out FILE.json``; a ``--small`` run's
record goes to a temporary folder unless ``--out`` is given). ``--small --device cpu`` runs a
tiny model in seconds (eager only).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from functools import partial

import torch
from torch import nn

from lorakit.baselines import apply_method
from lorakit.bench import bench_parser, bench_settings, parse_bench_args, save_bench_record
from lorakit.bench._models import GPT2_MEDIUM, TINY_GPT2, peft_lora
from lorakit.bench._timing import measure_memory, measure_time
from lorakit.bench._train_step_report import (
    FROZEN_BF16,
    add_branch_costs,
    comparisons,
    format_table,
    ratios,
)
from lorakit.cli import nonnegative_int, positive_int, probability
from lorakit.lora import cast_frozen_
from lorakit.lora.fast import kernels, set_fast_path
from lorakit.models.gpt2 import build_gpt2
from lorakit.presets import pick_device


@dataclass(frozen=True)
class Variant:
    """One row of the benchmark: which weights train, and how the frozen ones are stored.

    ``method`` is ``"full"``, ``"lora"`` (lorakit), ``"peft"`` or ``"floor"``; ``targets`` are
    lorakit's short names or PEFT's module names.
    """

    name: str
    method: str
    targets: tuple[str, ...] = ()
    frozen_bf16: bool = False


_PLAIN = (
    Variant("full", "full"),
    Variant("lorakit_qv", "lora", ("q", "v")),
    Variant("lorakit_qkv", "lora", ("q", "k", "v")),
    Variant("peft_qkv", "peft", ("c_attn",)),
    Variant("floor", "floor"),
)
VARIANTS = {
    v.name: v
    for v in _PLAIN
    + tuple(replace(v, name=v.name + FROZEN_BF16, frozen_bf16=True) for v in _PLAIN[1:])
}
METHODS = tuple(VARIANTS)  # the names on the command line and in the record
MODES = ("eager", "graph")
FULL = dict(arch=GPT2_MEDIUM, batch=8, seq=512, warmup=5, steps=5, rounds=7, mem_steps=3)
SMALL = dict(arch=TINY_GPT2, batch=2, seq=32, warmup=1, steps=1, rounds=2, mem_steps=1)
LORA = dict(r=4, alpha=32, dropout=0.1)


def prepare(model: nn.Module, name: str) -> nn.Module:
    """Make the weights of variant ``name`` trainable in ``model`` (a fresh HF GPT-2), in place.

    Returns ``model``, the module the loss runs on. Raises ``ValueError`` for an unknown name.
    """
    if name not in VARIANTS:
        raise ValueError(f"Unknown method {name!r}; use one of {', '.join(METHODS)}.")
    variant = VARIANTS[name]
    if variant.method == "full":
        apply_method(model, "ft")
    elif variant.method == "lora":
        apply_method(model, "lora", targets=list(variant.targets), **LORA)
        set_fast_path(model, True)  # the fused path (off by default in the layers)
    elif variant.method == "peft":
        # PEFT injects its layers into ``model`` in place: the loss runs on it as for the others
        peft_lora(model, LORA, variant.targets)
    else:  # the floor: backward runs through every layer, input gradients only
        model.requires_grad_(False)
        model.transformer.wpe.weight.requires_grad_(True)
    if variant.frozen_bf16:
        cast_frozen_(model, torch.bfloat16)
    return model


def build_variant(
    name: str,
    arch: dict,
    device: torch.device,
    dropout: float = 0.0,
    activation: str = "gelu_pytorch_tanh",
) -> nn.Module:
    """A GPT-2 of shape ``arch`` (random fp32 weights, seed 0, train mode) prepared as ``name``."""
    model = build_gpt2(
        **arch, dropout=dropout, seed=0, device=device, activation_function=activation
    ).train()
    return prepare(model, name)


def run(args: argparse.Namespace) -> dict:
    """Measure every (mode, variant) that ``args`` asks for; returns the results dict recorded."""
    device = pick_device(args.device)
    settings = bench_settings(args, FULL, SMALL, ("batch", "seq", "warmup", "steps", "rounds"))
    methods, notes = [], []
    for method in args.methods:
        if method.startswith("peft"):
            try:
                import peft  # noqa: F401
            except ImportError:
                notes.append(f"{method} skipped: peft is not installed (pip install peft).")
                print(notes[-1])
                continue
        methods.append(method)
    modes = list(dict.fromkeys(args.modes))
    if "graph" in modes and device.type != "cuda":
        modes.remove("graph")
        notes.append(f"graph mode skipped: CUDA graphs need a CUDA device, not {device.type}.")
        print(notes[-1])
    if not modes:
        raise SystemExit("No mode left to measure: on a CPU use --modes eager.")
    build = dict(
        make_model=partial(
            build_variant,
            arch=settings["arch"],
            device=device,
            dropout=args.dropout,
            activation=args.activation,
        ),
        compile_=args.compile,
    )
    peaks = measure_memory(methods, settings, device, **build)
    failed: dict[str, str] = {}
    timings = measure_time(methods, settings, device, modes=modes, failed=failed, **build)
    for method, why in failed.items():
        notes.append(f"graph capture failed for {method}: {why}")
        print(notes[-1])
    per_mode = {}
    for mode, results in timings.items():
        for method, r in results.items():
            r["peak_mem_mb"] = peaks.get(method)
        add_branch_costs(results)
        rows = comparisons(results)
        print(format_table(mode, results, rows) + "\n")
        per_mode[mode] = {"methods": results, "ratios": ratios(results), "comparisons": rows}
    goal_mode = "graph" if "graph" in per_mode else "eager"
    print(f"goals judged on the {goal_mode} steps")
    return {
        "settings": settings,
        "device": str(device),
        "model_dropout": args.dropout,
        "activation": args.activation,
        "lora": LORA,
        "lora_kernels": kernels.mode(),
        "modes": per_mode,
        "goal_mode": goal_mode,
        "ratios": per_mode[goal_mode]["ratios"],
        "notes": notes,
    }


def main(argv: list[str] | None = None) -> None:
    p = bench_parser("train-step", __doc__, "tiny model: a seconds-long smoke run (eager only)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument(
        "--modes",
        nargs="+",
        choices=MODES,
        default=list(MODES),
        help="eager steps, CUDA-graphed steps, or both (default; graph needs CUDA)",
    )
    p.add_argument("--batch", type=positive_int, default=None)
    p.add_argument("--seq", type=positive_int, default=None)
    p.add_argument("--warmup", type=nonnegative_int, default=None, help="untimed steps per method")
    p.add_argument(
        "--steps", type=positive_int, default=None, help="timed steps per method per round"
    )
    p.add_argument("--rounds", type=positive_int, default=None, help="interleaved rounds (median)")
    p.add_argument(
        "--dropout",
        type=probability,
        default=0.0,
        help="the model's own dropout, the same for every method (default 0)",
    )
    p.add_argument(
        "--activation",
        default="gelu_pytorch_tanh",
        choices=["gelu_pytorch_tanh", "gelu_new"],
        help="GPT-2's tanh GELU: one fused kernel (default) or HF's op-by-op gelu_new",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the backbone of every method (off by default; compiling "
        "seven models adds minutes)",
    )
    args = parse_bench_args(p, "train_step", argv)
    start = time.perf_counter()
    results = run(args)
    path = save_bench_record("train_step", args, results, start)
    print(f"wrote {path}")
