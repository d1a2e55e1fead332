"""LoRA on several GPUs: DDP throughput on N GPUs over 1, and FSDP memory per GPU, LoRA vs full.

``python -m lorakit.bench multi-gpu [--gpus 2] [--steps N] [--out DIR|FILE.json]``
``python -m lorakit.bench multi-gpu --smoke`` (a tiny model on CPU processes, gloo; seconds)

Run it *without* ``torchrun``: it launches ``torchrun`` itself, twice, and writes one record
(``data/runs/bench/multi_gpu.json``) when both parts have run:

* part ``single`` (1 process): ``lora_1gpu`` and ``full_1gpu``, :func:`lorakit.train.train` on
  one GPU with ``distributed="none"``;
* part ``multi`` (N processes): ``ddp_lora``, ``fsdp_lora``, ``ddp_full``, ``fsdp_full``, the same
  training under ``TrainConfig(distributed="ddp" | "fsdp")``.

Every row trains GPT-2 medium's architecture (24 layers, width 1024, vocabulary 50,257; random
weights: speed and memory do not depend on them) on random tokens, 8 rows of 512 tokens per GPU
(the global batch is 8·N rows), bf16 autocast, dropout 0.1, AdamW; LoRA is r = 4, α = 32 on Wq,
Wv. All rows step eagerly (CUDA graphs are off under a process group, so the 1-GPU rows are
eager too, for a like-for-like ratio). Throughput is tokens/s of all GPUs together, the median
over logged windows after the first ``skip``; peak memory is ``torch.cuda.max_memory_allocated``
of each rank (the record keeps rank 0's and the largest; ``mem_before_mib`` is what was still
allocated when the row began, which should be about 0). Each row also carries
:func:`lorakit.train.distributed.memory_per_gpu`, the formula's weights + gradients + AdamW state
(activations are not in it).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lorakit.bench._models import GPT2_MEDIUM, TINY_GPT2

ROWS = {
    "single": {"lora_1gpu": ("lora", "none"), "full_1gpu": ("full", "none")},
    "multi": {
        "ddp_lora": ("lora", "ddp"),
        "fsdp_lora": ("lora", "fsdp"),
        "ddp_full": ("full", "ddp"),
        "fsdp_full": ("full", "fsdp"),
    },
}
FULL = dict(arch=GPT2_MEDIUM, batch=8, seq=512, steps=40, log_every=5, skip=2, timeout_s=270)
SMOKE_ARCH = {**TINY_GPT2, "n_positions": 64}
SMOKE = dict(arch=SMOKE_ARCH, batch=2, seq=32, steps=4, log_every=1, skip=1, timeout_s=180)
LORA = dict(r=4, alpha=32, dropout=0.1, targets=["q", "v"])


def random_batches(n: int, rows: int, seq: int, vocab: int, seed: int = 0) -> list[dict]:
    """``n`` global batches of random tokens (rows, seq), every position labelled."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(0, vocab, (rows, seq), generator=g)
        out.append(
            {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
        )
    return out


def run_row(
    row: str, method: str, mode: str, settings: dict, device: torch.device, world: int
) -> dict:
    """Train one row on this rank; the row's numbers (the same on every rank but the memory)."""
    import torch.distributed as dist

    import lorakit
    from lorakit.models.gpt2 import build_gpt2
    from lorakit.train import TrainConfig, train
    from lorakit.train.distributed import memory_per_gpu

    world = world if mode != "none" else 1
    before = torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else None
    model = build_gpt2(**settings["arch"], dropout=0.1, seed=0, device=device)
    if method == "lora":
        lorakit.apply_lora(model, lorakit.LoRAConfig(**LORA))
    trainable, total = lorakit.count_parameters(model)
    block = sum(p.numel() for p in model.transformer.h[0].parameters())
    batches = random_batches(
        settings["steps"],
        settings["batch"] * world,
        settings["seq"],
        settings["arch"]["vocab_size"],
    )
    cfg = TrainConfig(
        lr=2e-4 if method == "lora" else 5e-5,
        max_steps=settings["steps"],
        warmup_steps=2,
        log_every=settings["log_every"],
        progress=False,
        bf16=device.type == "cuda",
        cuda_graphs=False,
        distributed=mode,
    )
    result = train(model, batches, cfg, device=device)
    windows = result.history[settings["skip"] :] or result.history
    peak = result.peak_mem_mb
    peaks = [peak]
    if mode != "none" and dist.is_initialized():
        peaks = [None] * dist.get_world_size()
        dist.all_gather_object(peaks, peak)
    formula = memory_per_gpu(total, trainable, world, "single" if mode == "none" else mode, block)
    out = {
        "method": method,
        "mode": mode,
        "world_size": world,
        "tokens_per_s": statistics.median(h["tokens_per_s"] for h in windows),
        "step_ms": 1000 * statistics.median(h["seconds"] for h in windows) / settings["log_every"],
        "peak_mem_mib": peak,
        "peak_mem_mib_max": max(peaks) if peak is not None else None,
        "mem_before_mib": before,
        "formula_mib": {k: v / 2**20 for k, v in formula.items()},
        "trainable_params": trainable,
        "total_params": total,
        "block_params": block,
        "steps": result.steps,
        "final_loss": result.history[-1]["loss"],
        "distributed": result.distributed,
    }
    del model, result
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def run_part(args: argparse.Namespace) -> None:
    """One ``torchrun`` launch: every row of ``args.part`` on every rank; rank 0 writes the JSON."""
    import torch.distributed as dist

    from lorakit.train.distributed import init_distributed

    rank, world = init_distributed("nccl" if args.device == "cuda" else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if args.device == "cuda" else torch.device("cpu")
    settings = _settings(args)
    rows = {}
    for row, (method, mode) in ROWS[args.part].items():
        rows[row] = run_row(row, method, mode, settings, device, world)
        if rank == 0:
            print(_line(row, rows[row]), flush=True)
    if rank == 0:
        Path(args.part_out).write_text(json.dumps(rows))
    if dist.is_initialized():
        dist.destroy_process_group()


def _settings(args: argparse.Namespace) -> dict:
    from lorakit.bench import bench_settings

    return bench_settings(args, FULL, SMOKE, ("steps",))


def _line(row: str, r: dict) -> str:
    peak = f"{r['peak_mem_mib']:8.0f} MiB" if r["peak_mem_mib"] is not None else "     n/a (cpu)"
    return (
        f"{row:10s} x{r['world_size']}  {r['tokens_per_s']:10.0f} tok/s  {r['step_ms']:8.1f} "
        f"ms/step  peak {peak}  formula {r['formula_mib']['total']:8.0f} MiB"
    )


def _ratios(rows: dict, gpus: int, on_gpus: bool = True) -> dict:
    """The record's ratios; the DDP goal (at least 0.9 x N) is judged on GPUs only."""
    one, many = ("GPU", "GPUs") if on_gpus else ("CPU process", "CPU processes")

    def ratio(key, num, den, field, label, goal=None):
        a, b = rows.get(num, {}).get(field), rows.get(den, {}).get(field)
        if a is None or b is None:
            return
        out[key] = {"label": label, "value": a / b}
        if goal is not None and on_gpus:
            out[key].update(goal=f">= {goal:g}", met=a / b >= goal)

    out: dict = {}
    ratio(
        "ddp_scaling",
        "ddp_lora",
        "lora_1gpu",
        "tokens_per_s",
        f"DDP LoRA throughput: {gpus} {many} / 1 {one}",
        0.9 * gpus,
    )
    ratio(
        "fsdp_scaling",
        "fsdp_lora",
        "lora_1gpu",
        "tokens_per_s",
        f"FSDP LoRA throughput: {gpus} {many} / 1 {one}",
    )
    ratio(
        "fsdp_full_vs_lora_memory",
        "fsdp_full",
        "fsdp_lora",
        "peak_mem_mib",
        f"FSDP peak memory per {one}: full fine-tuning / LoRA",
    )
    ratio(
        "fsdp_vs_ddp_full_memory",
        "fsdp_full",
        "ddp_full",
        "peak_mem_mib",
        f"full fine-tuning peak memory per {one}: FSDP / DDP",
    )
    ratio(
        "fsdp_vs_ddp_lora_memory",
        "fsdp_lora",
        "ddp_lora",
        "peak_mem_mib",
        f"LoRA peak memory per {one}: FSDP / DDP",
    )
    return out


def _launch(part: str, nproc: int, args: argparse.Namespace, folder: Path, settings: dict) -> dict:
    import lorakit

    out = folder / f"{part}.json"
    cmd = (
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            "lorakit.bench",
            "multi-gpu",
            "--part",
            part,
            "--part-out",
            str(out),
            "--device",
            args.device,
        ]
        + (["--smoke"] if args.small else [])
        + (["--steps", str(args.steps)] if args.steps else [])
    )
    env = dict(os.environ)
    root = str(Path(lorakit.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("OMP_NUM_THREADS", "1")  # what torchrun sets for N > 1: both parts alike
    env.setdefault("NCCL_NVLS_ENABLE", "0")  # no NVLink multicast: small all-reduces need none
    print(f"[{part}] {' '.join(cmd[2:])}", flush=True)
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=settings["timeout_s"]
        )
    except subprocess.TimeoutExpired as err:
        text = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        raise RuntimeError(
            f"part {part!r} ran past {settings['timeout_s']} s:\n{text[-3000:]}"
        ) from None
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(
            f"part {part!r} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}"
        )
    print("\n".join(line for line in proc.stdout.splitlines() if " tok/s " in line), flush=True)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> None:
    from lorakit.bench import bench_parser, parse_bench_args, save_bench_record
    from lorakit.cli import positive_int

    parser = bench_parser(
        "multi-gpu",
        __doc__,
        "a tiny model, 2 CPU processes with gloo unless --device cuda",
        device=False,
    )
    parser.add_argument("--gpus", type=positive_int, default=2, help="processes of the multi part")
    parser.add_argument("--steps", type=positive_int, default=None)
    parser.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        default=None,
        help="default: cuda when available (NCCL), else cpu (gloo)",
    )
    parser.add_argument("--part", choices=tuple(ROWS), help=argparse.SUPPRESS)
    parser.add_argument("--part-out", help=argparse.SUPPRESS)
    args = parse_bench_args(parser, "multi_gpu", argv)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() and not args.small else "cpu"
    if args.part:
        return run_part(args)
    if "LOCAL_RANK" in os.environ:
        parser.error(
            "run it without torchrun: `python -m lorakit.bench multi-gpu` launches "
            "torchrun itself (1 process, then --gpus processes)."
        )
    if args.device == "cpu" and not args.small:
        parser.error(
            "the full size (GPT-2 medium, 8 x 512 per GPU) needs GPUs; add --smoke for "
            "the tiny CPU run."
        )
    if args.device == "cuda" and torch.cuda.device_count() < args.gpus:
        parser.error(
            f"--gpus {args.gpus} needs {args.gpus} GPUs; this machine has "
            f"{torch.cuda.device_count()}."
        )
    start = time.perf_counter()
    settings = _settings(args)
    rows: dict = {}
    with tempfile.TemporaryDirectory(prefix="lorakit-multi-gpu-") as tmp:
        for part, nproc in (("single", 1), ("multi", args.gpus)):
            rows.update(_launch(part, nproc, args, Path(tmp), settings))
    ratios = _ratios(rows, args.gpus, on_gpus=args.device == "cuda")
    for r in ratios.values():
        goal = f"  goal {r['goal']}: {'met' if r['met'] else 'NOT met'}" if "goal" in r else ""
        print(f"{r['label']}: {r['value']:.3f}{goal}")
    gpu_names = (
        [torch.cuda.get_device_name(i) for i in range(args.gpus)] if args.device == "cuda" else None
    )
    results = {
        "settings": {k: v for k, v in settings.items() if k != "timeout_s"},
        "lora": LORA,
        "gpus": args.gpus,
        "device": args.device,
        "gpu_names": gpu_names,
        "backend": "nccl" if args.device == "cuda" else "gloo",
        "rows": rows,
        "ratios": ratios,
    }
    path = save_bench_record("multi_gpu", args, results, start)
    print(f"wrote {path}")
