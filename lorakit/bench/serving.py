"""Serving many LoRA adapters on one base: latency of mixed batches and memory (paper §4.2).

``python -m lorakit.bench serving [--out DIR|FILE.json] [--small --device cpu]``

One run, the GPT-2 medium architecture (24 layers, width 1024, random weights), bf16 on a GPU,
forward passes only, LoRA r = 4, α = 32 on Wq, Wv (the paper's setting) with random factors
(B ≠ 0, as if trained). Rows, each timed eagerly and, on CUDA, replayed as a CUDA graph:

* ``merged``: one adapter folded into the weights (the base's cost), 32 × 128 tokens;
* ``mixed``: :class:`lorakit.serving.MultiAdapterModel` with 8 adapters, the 32 rows naming them
  in turn (4 rows each), one forward;
* ``peft_mixed``: the same 8 adapters exported with :func:`lorakit.export_peft`, loaded into
  PEFT (``autocast_adapter_dtype=False``: its factors stay bf16), ``adapter_names=`` per row;
* ``one_unmerged``: every row on one adapter, kept unmerged (the multi-adapter layer's plain path);
* ``merged_b1`` / ``unmerged_b1`` / ``lorakit_layer_b1``: batch 1 × 128, merged, unmerged in the
  multi-adapter layer, and unmerged in lorakit's own LoRA layer;
* ``mixed_overlap`` / ``unmerged_b1_overlap`` (CUDA graphs only): ``mixed`` and ``unmerged_b1``
  captured with the router's ``overlap_streams`` on (each layer's ``x Aᵀ`` on a second stream,
  beside the base matmul).

A timing is the median over ``--trials`` passes taken in rounds that visit every row in turn (so
that drift in clocks hits all rows alike), each pass timed with CUDA events (wall clock on a CPU).
The ratios the goals are stated in come from this run. Memory: the bytes of weights to serve N
tasks, one base plus N adapters against N fine-tuned copies, N = 1..100 (computed from the
parameter counts), and the bytes the multi-adapter layers hold per adapter (measured).
``--small`` (also ``--smoke``) runs a tiny model in seconds on any device; its record goes to a
temporary folder unless ``--out`` says otherwise.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

import lorakit
from lorakit.bench import bench_parser, bench_settings, parse_bench_args, save_bench_record
from lorakit.bench._models import GPT2_MEDIUM, TINY_GPT2
from lorakit.cli import positive_int
from lorakit.peft_io import export_peft
from lorakit.presets import pick_device
from lorakit.serving import MultiAdapterModel, serving_bytes

FULL = dict(arch=GPT2_MEDIUM, rows=32, adapters=8, seq=128, trials=60, warmup=10, rounds=6)
SMALL = dict(arch=TINY_GPT2, rows=8, adapters=3, seq=16, trials=4, warmup=1, rounds=2)
LORA = dict(r=4, alpha=32, targets=["q", "v"])
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# (key, numerator, denominator, mode, label, limit)
GOALS = (
    (
        "mixed_vs_merged",
        "mixed",
        "merged",
        "eager",
        "mixed batch (8 adapters) / one merged adapter, eager",
        1.15,
    ),
    (
        "mixed_vs_merged_graph",
        "mixed",
        "merged",
        "graph",
        "mixed batch (8 adapters) / one merged adapter, CUDA graph",
        1.15,
    ),
    (
        "mixed_vs_peft",
        "mixed",
        "peft_mixed",
        "eager",
        "mixed batch: lorakit / PEFT adapter_names, eager",
        0.80,
    ),
    (
        "b1_unmerged_vs_merged_graph",
        "unmerged_b1",
        "merged_b1",
        "graph",
        "batch 1: unmerged / merged, CUDA graph",
        1.10,
    ),
)
EXTRA = (
    (
        "b1_unmerged_vs_merged",
        "unmerged_b1",
        "merged_b1",
        "eager",
        "batch 1: unmerged / merged, eager",
    ),
    (
        "b1_lorakit_layer_vs_merged_graph",
        "lorakit_layer_b1",
        "merged_b1",
        "graph",
        "batch 1: lorakit LoRA layer unmerged / merged, CUDA graph",
    ),
    (
        "one_unmerged_vs_merged",
        "one_unmerged",
        "merged",
        "eager",
        "one adapter for all rows, unmerged / merged, eager",
    ),
    (
        "one_unmerged_vs_merged_graph",
        "one_unmerged",
        "merged",
        "graph",
        "one adapter for all rows, unmerged / merged, CUDA graph",
    ),
    (
        "b1_overlap_vs_merged_graph",
        "unmerged_b1_overlap",
        "merged_b1",
        "graph",
        "batch 1: unmerged, x A^T on a second stream / merged, CUDA graph",
    ),
    (
        "mixed_overlap_vs_merged_graph",
        "mixed_overlap",
        "merged",
        "graph",
        "mixed batch, x A^T on a second stream / one merged adapter, CUDA graph",
    ),
)


def make_adapters(base, n: int, folder: Path):
    """``n`` lorakit adapters (random A, B) saved and exported to PEFT under ``folder``; returns
    the LoRA model, which holds the last one."""
    model = copy.deepcopy(base)
    lorakit.apply_lora(model, lorakit.LoRAConfig(**LORA))
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_A" in name:
                    p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
                elif "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        lorakit.save_adapter(model, folder / f"a{i}")
        export_peft(model, folder / f"peft{i}")
    return model


class Timed:
    """A forward to time: eagerly, or captured once in a CUDA graph and replayed."""

    def __init__(self, fn, graph: bool, warmup: int) -> None:
        self.fn, self.graph = fn, None
        if graph:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    fn()
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.out = fn()
        for _ in range(warmup):
            self()

    def __call__(self):
        return self.graph.replay() if self.graph is not None else self.fn()


def time_once(call, device: torch.device) -> float:
    """Milliseconds of one call."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        call()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    call()
    return 1000 * (time.perf_counter() - t0)


def build_rows(s: dict, device, dtype, folder: Path, use_peft: bool):
    """The models and the ``{row: (forward, modes)}`` to time; also what they computed."""
    from lorakit.models.gpt2 import build_gpt2

    base = build_gpt2(**s["arch"], seed=0, device=device).to(dtype).eval()
    names = [f"a{i % s['adapters']}" for i in range(s["rows"])]
    lora = make_adapters(base, s["adapters"], folder)
    lorakit.load_adapter(lora, folder / "a0")
    served = MultiAdapterModel(copy.deepcopy(base), {n: folder / n for n in sorted(set(names))})
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, s["arch"]["vocab_size"], (s["rows"], s["seq"]), generator=gen).to(device)
    ids1 = ids[:1].clone()
    routes = {"mixed": served.route_of(names)[0].to(device), "one": served.route_of("a0")[0]}
    info = {"names": names}

    def on(route_key, x, overlap=False):
        def fn():
            served.router.overlap_streams = overlap  # used only while a graph is captured
            served.router.set(routes[route_key])  # on the device already: nothing is copied
            served.router.prepare(x.device)
            return served.model(x, use_cache=False).logits

        return fn

    both, graph = ("eager", "graph"), ("graph",)
    rows = {
        "mixed": (on("mixed", ids), both),
        "one_unmerged": (on("one", ids), both),
        "unmerged_b1": (on("one", ids1), both),
        "lorakit_layer_b1": (lambda: lora(ids1, use_cache=False).logits, both),
        "mixed_overlap": (on("mixed", ids, True), graph),
        "unmerged_b1_overlap": (on("one", ids1, True), graph),
    }
    if use_peft:
        from peft import PeftModel

        peft_model = PeftModel.from_pretrained(
            copy.deepcopy(base), folder / "peft0", adapter_name="a0", autocast_adapter_dtype=False
        ).eval()
        for i in range(1, s["adapters"]):
            peft_model.load_adapter(
                folder / f"peft{i}", adapter_name=f"a{i}", autocast_adapter_dtype=False
            )
        info["peft_lora_dtype"] = str(
            next(p for n, p in peft_model.named_parameters() if "lora_A" in n).dtype
        )
        rows["peft_mixed"] = (
            lambda: peft_model(input_ids=ids, adapter_names=names, use_cache=False).logits,
            ("eager",),
        )
    merged = copy.deepcopy(lora)
    lorakit.merge_lora(merged)
    rows["merged"] = (lambda: merged(ids, use_cache=False).logits, both)
    rows["merged_b1"] = (lambda: merged(ids1, use_cache=False).logits, both)
    with torch.no_grad():  # the rows compute what they should (bf16 rounding aside)
        ref = rows["merged"][0]().float()
        scale = ref.abs().max().item()
        a0 = [i for i, n in enumerate(names) if n == "a0"]
        mixed = rows["mixed"][0]().float()
        info["max_abs_diff_mixed_vs_merged_a0_rows"] = (mixed[a0] - ref[a0]).abs().max().item()
        if use_peft:
            info["max_abs_diff_peft_vs_lorakit_mixed"] = (
                (rows["peft_mixed"][0]().float() - mixed).abs().max().item()
            )
        info["logit_scale"] = scale
    info["stacked_bytes_per_adapter"] = served.stacked_bytes() / (len(served.names) + 1)
    info["params"] = {
        "base": lorakit.count_parameters(base)[1],
        "adapter": lorakit.count_parameters(lora)[0],
    }
    return rows, info


def measure(rows: dict, s: dict, device) -> dict:
    """Median ms of every row in every mode; a mode a row cannot run in gets the reason."""
    modes = ["eager"] + (["graph"] if device.type == "cuda" else [])
    out: dict[str, dict] = {m: {} for m in modes}
    timed = {}
    with torch.no_grad():
        for mode in modes:
            for name, (fn, row_modes) in rows.items():
                if mode not in row_modes:
                    if name == "peft_mixed":
                        out[mode][name] = {
                            "skipped": "indexes by Python lists on the host; not capturable"
                        }
                    continue
                try:
                    timed[mode, name] = Timed(fn, mode == "graph", s["warmup"])
                except RuntimeError as err:  # a forward that cannot be captured: say why
                    out[mode][name] = {"skipped": f"{type(err).__name__}: {str(err)[:200]}"}
        samples = {key: [] for key in timed}
        per_round = max(1, s["trials"] // s["rounds"])
        for _ in range(s["rounds"]):
            for key, call in timed.items():
                samples[key] += [time_once(call, device) for _ in range(per_round)]
    for (mode, name), ms in samples.items():
        out[mode][name] = {
            "median_ms": statistics.median(ms),
            "min_ms": min(ms),
            "max_ms": max(ms),
            "n": len(ms),
        }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser("serving", __doc__, "a tiny model (seconds, any device)")
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), default=None, help="default bf16 on CUDA, fp32 elsewhere"
    )
    parser.add_argument("--trials", type=positive_int, default=None)
    parser.add_argument("--no-peft", action="store_true", help="leave the PEFT row out")
    args = parse_bench_args(parser, "serving", argv)
    start = time.perf_counter()
    s = bench_settings(args, FULL, SMALL, ("trials",))
    device = pick_device(args.device)
    dtype_name = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    use_peft = not args.no_peft
    if use_peft:
        try:
            import peft  # noqa: F401
        except ImportError:
            use_peft = False
    with tempfile.TemporaryDirectory() as tmp:
        rows, info = build_rows(s, device, DTYPES[dtype_name], Path(tmp), use_peft)
        times = measure(rows, s, device)
    ratios = {}
    for key, num, den, mode, label, *limit in GOALS + EXTRA:
        t = times.get(mode, {})
        if "median_ms" in t.get(num, {}) and "median_ms" in t.get(den, {}):
            ratios[key] = {"label": label, "value": t[num]["median_ms"] / t[den]["median_ms"]}
            if limit:
                ratios[key].update(goal=f"<= {limit[0]}", met=ratios[key]["value"] <= limit[0])
        elif limit:
            ratios[key] = {
                "label": label,
                "value": None,
                "goal": f"<= {limit[0]}",
                "met": None,
                "why": f"not measured ({mode} mode on {device.type}, "
                f"{'PEFT missing' if 'peft' in num + den and not use_peft else 'see times'})",
            }
    for mode, t in times.items():
        for name, r in t.items():
            print(
                f"[{mode:5s}] {name:18s} "
                + (f"{r['median_ms']:8.3f} ms" if "median_ms" in r else f"skipped: {r['skipped']}")
            )
    for r in ratios.values():
        verdict = (
            ""
            if "goal" not in r
            else f"  goal {r['goal']}: "
            + ("met" if r["met"] else "not measured" if r["met"] is None else "NOT met")
        )
        print(f"{r['label']}: " + ("-" if r["value"] is None else f"{r['value']:.3f}") + verdict)
    ns = list(range(1, 101))
    memory = serving_bytes(
        info["params"]["base"],
        info["params"]["adapter"],
        ns,
        bytes_per_value=torch.finfo(DTYPES[dtype_name]).bits // 8,
    )
    results = {
        "settings": s,
        "lora": LORA,
        "dtype": dtype_name,
        "device": str(device),
        "peft": use_peft,
        "times": times,
        "ratios": ratios,
        "checks": info,
        "memory": memory,
    }
    path = save_bench_record("serving", args, results, start)
    print(f"wrote {path}")
