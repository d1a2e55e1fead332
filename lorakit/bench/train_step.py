"""Training-step time and peak memory: LoRA against full fine-tuning and against PEFT's LoRA.

``python -m lorakit.bench train-step`` steps, in one process, the GPT-2 medium architecture
(random weights: 24 layers, width 1024, vocab 50,257), batch 8, sequence 512, fp32 master weights
with bf16 autocast, for:

* ``full``         every weight trains (full fine-tuning);
* ``lorakit_qv``   lorakit LoRA on Wq, Wv (slices of the fused ``c_attn``; the paper's setting);
* ``lorakit_qkv``  lorakit LoRA on Wq, Wk, Wv;
* ``peft_qkv``     PEFT's LoRA on ``c_attn`` (all of q, k, v: PEFT cannot take slices);
* ``floor``        every weight frozen except the position embedding: backward still runs through
  every layer but computes input gradients only. It is the step of a LoRA whose branch cost
  nothing, so ``step - floor`` (``branch_ms``) is what a LoRA implementation adds;
* ``*_frozen_bf16`` the LoRA methods and the floor again with the frozen weights stored in bf16
  (:func:`lorakit.lora.precision.cast_frozen_` after adapting): bit-identical under autocast,
  less memory and fewer cast kernels. The PEFT runs are skipped with a note when ``peft`` is not
  installed.

Every method gets the same model options (dropout, SDPA attention, GELU kernel), the same batch,
the same loss (:func:`lorakit.train.causal_lm_loss` with label positions found once on the CPU, so
the loss adds no host sync; label smoothing 0.1), the same optimizer (AdamW, fused and capturable
on CUDA, lr 2e-4, weight decay 0.01 on matrices) and gradient clipping: only the set of trainable
weights and the layer implementation differ. LoRA: r = 4, α = 32, dropout 0.1.

Two modes, both measured in the same run (``--modes``):

* ``eager``: plain PyTorch. Each of the ~1,600 kernels of a step is launched from Python. When
  the host cannot launch them as fast as the GPU runs them, the step is *launch-bound*: its time
  measures the host (forward then takes longer than backward), it is noisy, and a LoRA step is
  barely faster than a full one, if at all, although it skips a third of the matmul work.
* ``graph``: the whole step (forward, backward, clipping, AdamW) captured once in a CUDA graph
  (:class:`lorakit.train.graph.CUDAGraphStep`) and replayed. The step then costs what the GPU
  needs for it, the quantity the FLOP count speaks about. The goals are judged on these steps
  when they were measured (on CUDA), on the eager ones otherwise; the record says which
  (``goal_mode``) and keeps both.

What makes a LoRA step cheap on the GPU, for every method alike or in lorakit's layers:

* the LM head and the loss over 50,257 words: ``causal_lm_loss`` runs the head in chunks, never
  keeps the (B·T, V) logits, pads the vocabulary to a multiple of 64 so that cuBLAS uses its
  aligned kernels, and makes few passes over each chunk (:func:`lorakit.train.linear_cross_entropy`);
* GPT-2's tanh-GELU runs as one fused kernel (``--activation gelu_pytorch_tanh``, the same
  function as HF's ``gelu_new``);
* lorakit's layers adapt q and v as slices of ``c_attn`` (k costs nothing) and fold the branch
  into the base layer's matmul, ``[x | h] [W ; s·Bᵀ]`` (the fused path, switched on here with
  :func:`lorakit.lora.fast.set_fast_path`; :class:`lorakit.lora.fast.LoRALinearFunction`);
  in graph mode the branch's dropout runs in two Triton kernels that keep no mask
  (:mod:`lorakit.lora.fast.kernels`; the record's ``lora_kernels`` says when they ran).

How it measures. Time: every model is built up front; each gets ``--warmup`` untimed steps; then
``--rounds`` rounds, in each of which every (mode, method) runs ``--steps`` steps in turn (the
order rotates from round to round), so that a slow spell of the machine hits all alike. A round's
time per step comes from CUDA events around the whole round (launch gaps included); a method's
``step_ms`` is the median over rounds. Memory: a separate pass, one method at a time alone on the
device, stepped eagerly, ``torch.cuda.reset_peak_memory_stats`` before its model is built, a few
steps, then ``max_memory_allocated`` (weights, gradients, optimizer state and activations).

Goals (as ratios in one run; each marked met or not in the record and the table):
lorakit q,v step <= 0.75 x full fine-tuning (theory: about 2/3), peak memory <= 0.6 x full
fine-tuning, lorakit q,k,v <= 0.9 x PEFT q,k,v with each library's standard recipe (fp32 frozen
weights). Beside them: ``floor / PEFT``, the lowest lorakit / PEFT ratio any LoRA implementation
could reach, and the branch costs ``(step - floor)`` of lorakit over PEFT's. Written to
``data/runs/bench/train_step.json`` (or ``--out DIR`` / ``--out FILE.json``; a ``--small`` run's
record goes to a temporary folder unless ``--out`` is given). ``--small --device
cpu`` runs a tiny model in seconds (eager only).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import torch

import lorakit
from lorakit.bench import parse_bench_args, save_bench_record
from lorakit.cli import device, nonnegative_int, positive_int, probability, writable_output
from lorakit.lora.fast import kernels, set_fast_path
from lorakit.lora.precision import cast_frozen_
from lorakit.presets import pick_device
from lorakit.train import causal_lm_loss, label_positions
from lorakit.train.loop import _param_groups

FROZEN_BF16 = "_frozen_bf16"
BASE_METHODS = ("full", "lorakit_qv", "lorakit_qkv", "peft_qkv", "floor")
METHODS = BASE_METHODS + tuple(m + FROZEN_BF16 for m in BASE_METHODS[1:])
MODES = ("eager", "graph")
FULL = dict(arch=dict(n_layer=24, n_embd=1024, n_head=16, n_positions=1024, vocab_size=50257),
            batch=8, seq=512, warmup=5, steps=5, rounds=7, mem_steps=3)
SMALL = dict(arch=dict(n_layer=2, n_embd=64, n_head=2, n_positions=128, vocab_size=512),
             batch=2, seq=32, warmup=1, steps=1, rounds=2, mem_steps=1)
LORA = dict(r=4, alpha=32, dropout=0.1)
# (key, numerator, denominator, metric, label, goal name, limit[, baseline]): the ratios the
# record reports; with a baseline method the ratio is (numerator - baseline) / (denominator - baseline)
COMPARISONS = (
    ("step_lorakit_qv_vs_full", "lorakit_qv", "full", "step_ms",
     "step: lorakit q,v / full fine-tuning", "lorakit_step_le_0.75_full", 0.75),
    ("mem_lorakit_qv_vs_full", "lorakit_qv", "full", "peak_mem_mb",
     "peak memory: lorakit q,v / full fine-tuning", "lorakit_mem_le_0.6_full", 0.6),
    ("step_lorakit_qkv_vs_peft_qkv", "lorakit_qkv", "peft_qkv", "step_ms",
     "step: q,k,v lorakit / PEFT, both fp32 frozen (each library's standard recipe)",
     "lorakit_step_le_0.9_peft", 0.9),
    ("step_lorakit_qkv_frozen_bf16_vs_peft_qkv_frozen_bf16", "lorakit_qkv_frozen_bf16",
     "peft_qkv_frozen_bf16", "step_ms",
     "step: q,k,v lorakit / PEFT, both frozen weights in bf16 (same treatment)", None, None),
    ("step_lorakit_qkv_frozen_bf16_vs_peft_qkv", "lorakit_qkv_frozen_bf16", "peft_qkv", "step_ms",
     "step: q,k,v lorakit frozen-bf16 / PEFT default", None, None),
    ("step_lorakit_qv_vs_peft_qkv", "lorakit_qv", "peft_qkv", "step_ms",
     "step: lorakit q,v (paper) / PEFT q,k,v (its only option): different targets", None, None),
    ("step_lorakit_qv_frozen_bf16_vs_full", "lorakit_qv_frozen_bf16", "full", "step_ms",
     "step: lorakit q,v frozen-bf16 / full fine-tuning", None, None),
    ("mem_lorakit_qv_frozen_bf16_vs_full", "lorakit_qv_frozen_bf16", "full", "peak_mem_mb",
     "peak memory: lorakit q,v frozen-bf16 / full fine-tuning", None, None),
    ("step_lorakit_qkv_vs_full", "lorakit_qkv", "full", "step_ms",
     "step: lorakit q,k,v / full fine-tuning", None, None),
    ("step_peft_qkv_vs_full", "peft_qkv", "full", "step_ms",
     "step: PEFT q,k,v / full fine-tuning", None, None),
    ("mem_lorakit_qkv_vs_peft_qkv", "lorakit_qkv", "peft_qkv", "peak_mem_mb",
     "peak memory: q,k,v lorakit / PEFT", None, None),
    ("mem_peft_qkv_vs_full", "peft_qkv", "full", "peak_mem_mb",
     "peak memory: PEFT q,k,v / full fine-tuning", None, None),
    ("step_floor_vs_full", "floor", "full", "step_ms",
     "step: floor (no weight gradients, a LoRA branch that costs nothing) / full fine-tuning",
     None, None),
    ("step_floor_vs_peft_qkv", "floor", "peft_qkv", "step_ms",
     "step: floor / PEFT q,k,v = the lowest q,k,v lorakit / PEFT that any LoRA could reach",
     None, None),
    ("branch_lorakit_qkv_vs_peft_qkv", "lorakit_qkv", "peft_qkv", "step_ms",
     "LoRA branch cost (step - floor): q,k,v lorakit / PEFT, both fp32 frozen", None, None,
     "floor"),
    ("branch_lorakit_qkv_frozen_bf16_vs_peft_qkv_frozen_bf16", "lorakit_qkv_frozen_bf16",
     "peft_qkv_frozen_bf16", "step_ms",
     "LoRA branch cost (step - floor): q,k,v lorakit / PEFT, both frozen bf16", None, None,
     "floor_frozen_bf16"),
)


def build_model(arch: dict, device: torch.device, dropout: float, seed: int = 0,
                activation: str = "gelu_pytorch_tanh"):
    """GPT-2 of shape ``arch`` with random fp32 weights on ``device``, SDPA attention."""
    from lorakit.models.gpt2 import build_gpt2

    return build_gpt2(**arch, dropout=dropout, seed=seed, device=device,
                      activation_function=activation).train()


def apply_method(model, method: str):
    """Make ``method``'s weights trainable; return the module the loss runs on (an HF causal LM).

    ``*_frozen_bf16`` methods then store the frozen linear weights in bf16 (``cast_frozen_``).
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; use one of {', '.join(METHODS)}.")
    base = method.removesuffix(FROZEN_BF16)
    if base == "floor":  # every weight frozen but the position embedding, so backward still
        model.requires_grad_(False)  # runs through every layer, input gradients only
        model.transformer.wpe.weight.requires_grad_(True)
    elif base in ("lorakit_qv", "lorakit_qkv"):
        targets = ["q", "v"] if base == "lorakit_qv" else ["q", "k", "v"]
        lorakit.apply_lora(model, lorakit.LoRAConfig(targets=targets, **LORA))
        set_fast_path(model, True)  # the fused path (off by default in the layers)
    elif base == "peft_qkv":
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                         target_modules=["c_attn"], fan_in_fan_out=True, bias="none")
        # the LoRA layers are injected into ``model`` in place; the loss runs on it directly,
        # exactly as for the other methods
        get_peft_model(model, cfg)
    if method.endswith(FROZEN_BF16):
        cast_frozen_(model, torch.bfloat16)
    return model


class _Timer:
    """Marks time with CUDA events on a GPU (no sync), wall clock elsewhere; milliseconds."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def elapsed(self, a, b) -> float:
        return a.elapsed_time(b) if self.cuda else (b - a) * 1000.0


class _Runner:
    """One method's model, optimizer and batch, ready to step without any host sync.

    ``graph=True`` captures the whole step (forward, backward, clipping, AdamW) in a CUDA graph
    (:class:`lorakit.train.graph.CUDAGraphStep`) after ``warmup`` eager steps; each call of
    :meth:`step` then replays it.
    """

    def __init__(self, method: str, settings: dict, device: torch.device, dropout: float,
                 compile_: bool, activation: str, graph: bool = False) -> None:
        self.method = method
        self.model = apply_method(build_model(settings["arch"], device, dropout,
                                              activation=activation), method)
        self.trainable, self.total = lorakit.count_parameters(self.model)
        cuda = device.type == "cuda"
        # capturable on CUDA for both modes, so eager and graphed run the same optimizer kernels
        self.opt = torch.optim.AdamW(_param_groups(self.model, 0.01), lr=2e-4, fused=cuda,
                                     capturable=cuda)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.backbone = torch.compile(self.model.base_model) if compile_ else None
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(0, settings["arch"]["vocab_size"], (settings["batch"], settings["seq"]),
                            generator=g)
        # as lorakit.train does: positions found on the CPU, no all-ones attention mask
        self.positions = label_positions(ids).to(device)
        self.batch = {"input_ids": ids.to(device)}
        self.device_type = device.type
        self.loss = None
        self.graphed = None
        if graph:
            from lorakit.train.graph import CUDAGraphStep

            self.graphed = CUDAGraphStep(self._step, self.opt, warmup=max(1, settings["warmup"]))

    def _forward(self) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            loss, _ = causal_lm_loss(self.model, self.batch, 0.1, self.backbone, self.positions)
        return loss

    def _update(self) -> None:
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()

    def _step(self) -> torch.Tensor:
        """Forward, backward, clip, AdamW: the step a graph captures (gradients not zeroed)."""
        loss = self._forward()
        loss.backward()
        self._update()
        return loss.detach()

    def step(self, timer: _Timer) -> tuple:
        """One step; returns the time marks (start, forward done, backward done, end).

        A graphed step is one replay, so its inner marks are ``None``.
        """
        if self.graphed is not None:
            t0 = timer.mark()
            self.loss = self.graphed()
            return t0, None, None, timer.mark()
        t0 = timer.mark()
        loss = self._forward()
        t1 = timer.mark()
        loss.backward()
        t2 = timer.mark()
        self._update()
        self.opt.zero_grad(set_to_none=True)
        self.loss = loss.detach()
        return t0, t1, t2, timer.mark()


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def measure_memory(methods, settings: dict, device: torch.device, **build) -> dict[str, float]:
    """Peak MiB of each method alone on the device, stepped eagerly (CUDA only; ``{}`` elsewhere)."""
    if device.type != "cuda":
        return {}
    timer, peaks = _Timer(device), {}
    for method in methods:
        _free()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        runner = _Runner(method, settings, device, **build)
        for _ in range(settings["mem_steps"]):
            runner.step(timer)
        torch.cuda.synchronize(device)
        peaks[method] = (torch.cuda.max_memory_allocated(device) - before) / 2**20
        del runner
    _free()
    return peaks


def _median_or_none(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def measure_time(methods, settings: dict, device: torch.device, modes=("eager",),
                 failed: dict | None = None, **build) -> dict[str, dict[str, dict]]:
    """Interleaved rounds over every (mode, method); ``{mode: {method: timings}}``.

    Each method's ``step_ms`` is the median over rounds of a round's mean step time (ms). A
    method whose graph capture fails is left out of the graph mode; ``failed`` (a dict, filled
    in) says why.
    """
    failed = {} if failed is None else failed
    timer = _Timer(device)
    runners = {}
    for mode in modes:
        for m in methods:
            try:
                runners[(mode, m)] = _Runner(m, settings, device, graph=mode == "graph", **build)
            except RuntimeError as err:  # a capture that fails is reported, not fatal
                if mode != "graph":
                    raise
                failed[m] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
                _free()
    for runner in runners.values():
        for _ in range(settings["warmup"]):
            runner.step(timer)
    rounds = {key: [] for key in runners}
    phases = {key: [] for key in runners}
    order = list(runners)
    for k in range(settings["rounds"]):
        for key in order[k % len(order):] + order[:k % len(order)]:
            start = timer.mark()
            phases[key] += [runners[key].step(timer) for _ in range(settings["steps"])]
            rounds[key].append((start, timer.mark()))
    if device.type == "cuda":
        torch.cuda.synchronize(device)

    def span(a, b):
        return None if a is None or b is None else timer.elapsed(a, b)

    out: dict[str, dict[str, dict]] = {mode: {} for mode in modes}
    for (mode, method), runner in runners.items():
        per_step = [timer.elapsed(a, b) / settings["steps"] for a, b in rounds[(mode, method)]]
        marks = phases[(mode, method)]
        out[mode][method] = {
            "method": method, "mode": mode, "trainable_params": runner.trainable,
            "total_params": runner.total, "frozen_bf16": method.endswith(FROZEN_BF16),
            "step_ms": statistics.median(per_step), "step_ms_min": min(per_step),
            "step_ms_rounds": per_step,
            "forward_ms": _median_or_none(span(a, b) for a, b, _, _ in marks),
            "backward_ms": _median_or_none(span(b, c) for _, b, c, _ in marks),
            "optimizer_ms": _median_or_none(span(c, d) for _, _, c, d in marks),
            "final_loss": float(runner.loss),
        }
    del runners
    _free()
    return out


def comparisons(results: dict[str, dict]) -> list[dict]:
    """Every ratio of :data:`COMPARISONS` with its label, goal and whether it is met.

    ``ratio`` is ``None`` when a method or the metric was not measured; ``met`` is ``None`` then,
    and also for comparisons without a goal.
    """
    rows = []
    for key, a, b, metric, label, goal, limit, *baseline in COMPARISONS:
        names = (a, b, *baseline)
        values = [results.get(m, {}).get(metric) for m in names]
        ratio = None
        if all(values):
            ra, rb, rf = (*values, 0.0) if not baseline else values
            ratio = (ra - rf) / (rb - rf) if rb != rf else None
        met = None if ratio is None or limit is None else bool(ratio <= limit)
        rows.append({"key": key, "label": label, "numerator": a, "denominator": b,
                     "baseline": baseline[0] if baseline else None, "metric": metric,
                     "ratio": ratio, "goal": goal, "limit": limit, "met": met})
    return rows


def ratios(results: dict[str, dict]) -> dict:
    """``{key: ratio}`` for every comparison, plus ``goals``: ``{goal name: met}``."""
    rows = comparisons(results)
    out: dict = {row["key"]: row["ratio"] for row in rows}
    out["goals"] = {row["goal"]: row["met"] for row in rows if row["goal"]}
    return out


def _fmt(value: float | None, width: int, digits: int = 1) -> str:
    return f"{'-':>{width}s}" if value is None else f"{value:{width}.{digits}f}"


def _table(mode: str, results: dict[str, dict], rows: list[dict]) -> str:
    lines = [f"[{mode}]", f"{'method':24s} {'step ms':>8s} {'min':>7s} {'fwd':>6s} {'bwd':>6s} "
             f"{'opt':>6s} {'branch':>6s} {'peak MiB':>9s} {'trainable':>12s}"]
    for name, r in results.items():
        mem = "n/a" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f}"
        lines.append(f"{name:24s} {r['step_ms']:8.2f} {r['step_ms_min']:7.2f} "
                     f"{_fmt(r['forward_ms'], 6)} {_fmt(r['backward_ms'], 6)} "
                     f"{_fmt(r['optimizer_ms'], 6)} {_fmt(r.get('branch_ms'), 6, 2)} {mem:>9s} "
                     f"{r['trainable_params']:12,}")
    lines.append("")
    for row in rows:
        value = "n/a" if row["ratio"] is None else f"{row['ratio']:.3f}"
        goal = "" if row["limit"] is None else \
            f"goal <= {row['limit']}: " + {True: "met", False: "NOT met", None: "not measured"}[
                row["met"]]
        lines.append(f"{row['label']:88s} {value:>6s}  {goal}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    device = pick_device(args.device)
    settings = dict(SMALL if args.small else FULL)
    for key in ("batch", "seq", "warmup", "steps", "rounds"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
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
    build = dict(dropout=args.dropout, compile_=args.compile, activation=args.activation)
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
            floor = results.get("floor" + (FROZEN_BF16 if r["frozen_bf16"] else ""))
            lora = method.removesuffix(FROZEN_BF16) not in ("full", "floor")
            # what the LoRA branch adds to a step: the step minus the floor's (same frozen dtype)
            r["branch_ms"] = r["step_ms"] - floor["step_ms"] if lora and floor else None
        rows = comparisons(results)
        print(_table(mode, results, rows) + "\n")
        per_mode[mode] = {"methods": results, "ratios": ratios(results), "comparisons": rows}
    goal_mode = "graph" if "graph" in per_mode else "eager"
    print(f"goals judged on the {goal_mode} steps")
    return {"settings": settings, "device": str(device), "model_dropout": args.dropout,
            "activation": args.activation, "lora": LORA, "lora_kernels": kernels.mode(),
            "modes": per_mode,
            "goal_mode": goal_mode, "ratios": per_mode[goal_mode]["ratios"], "notes": notes}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lorakit.bench train-step", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", type=device, default=None,
                   help="cuda, cpu, ... (default: picked by hardware)")
    p.add_argument("--small", action="store_true",
                   help="tiny model: a seconds-long smoke run (record in a temp folder by default)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                   help="eager steps, CUDA-graphed steps, or both (default; graph needs CUDA)")
    p.add_argument("--batch", type=positive_int, default=None)
    p.add_argument("--seq", type=positive_int, default=None)
    p.add_argument("--warmup", type=nonnegative_int, default=None, help="untimed steps per method")
    p.add_argument("--steps", type=positive_int, default=None, help="timed steps per method per round")
    p.add_argument("--rounds", type=positive_int, default=None, help="interleaved rounds (median)")
    p.add_argument("--dropout", type=probability, default=0.0,
                   help="the model's own dropout, the same for every method (default 0)")
    p.add_argument("--activation", default="gelu_pytorch_tanh",
                   choices=["gelu_pytorch_tanh", "gelu_new"],
                   help="GPT-2's tanh GELU: one fused kernel (default) or HF's op-by-op gelu_new")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the backbone of every method (off by default; compiling "
                        "seven models adds minutes)")
    p.add_argument("--out", type=writable_output, default=None,
                   help="directory, or a .json file (default data/runs/bench; --small: a temp folder)")
    args = parse_bench_args(p, "train_step", argv)
    start = time.perf_counter()
    results = run(args)
    path = save_bench_record("train_step", args, results, start)
    print(f"wrote {path}")
