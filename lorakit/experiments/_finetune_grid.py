"""The grid behind ``python -m lorakit.experiments finetune``: one record per (method, lr, seed).

A grid is planned seed by seed (every configuration at seed 0, then at seed 1, ...), so a grid cut
short still has the most configurations with the most seeds. Each finished run is written at once
(:func:`lorakit.runs.save_record`, provenance computed), and a run whose record is *current* (made
from this ``lorakit/`` source, on the same data files and base) is skipped unless ``force``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.cli import nonnegative_int, positive_float, writable_folder
from lorakit.data.sources import data_source
from lorakit.experiments._finetune_run import load_task, run_method, template_row
from lorakit.experiments._finetune_settings import (
    METHODS,
    PRESETS,
    base_block,
    preset_settings,
    settings_block,
)
from lorakit.experiments._grid import add_run_arguments, other_build
from lorakit.experiments._jobs import Job, run_jobs
from lorakit.presets import get_preset
from lorakit.runs import RUNS_DIR, save_record, source_changes, source_sha256


@dataclass(frozen=True)
class GridRun:
    """One run of the grid; ``name`` is its record's file stem, e.g. ``lora-lr0.0002-s0``."""

    method: str
    lr: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.method}-lr{self.lr:g}-s{self.seed}"


@dataclass
class GridOutcome:
    """What :func:`run_grid` did: records written, runs skipped as current, runs not started."""

    folder: Path
    written: list[Path] = field(default_factory=list)
    current: list[str] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)


def plan_grid(
    methods: Sequence[str], seeds: Sequence[int], lrs: dict[str, Sequence[float]]
) -> list[GridRun]:
    """Every (method, lr, seed), seed-major: all configurations at the first seed come first."""
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"Unknown methods {sorted(unknown)}; use {', '.join(METHODS)}.")
    if not seeds:
        raise ValueError("Give at least one seed (--seeds 0 1 2).")
    return [
        GridRun(m, float(lr), int(s))
        for s in dict.fromkeys(seeds)
        for m in methods
        for lr in dict.fromkeys(lrs[m])
    ]


def grid_folder(
    root: str | Path, preset: str, base_name: str, data_kind: str, tag: str | None = None
) -> Path:
    """``root/ch06_finetune_<preset>[_<base>_<data>][_<tag>]``; the middle part is left out for
    the course's default pair, the offline base on the synthetic set."""
    name = f"ch06_finetune_{preset}"
    if (base_name, data_kind) != ("offline", "synthetic"):
        name += f"_{base_name.replace('/', '-')}_{data_kind}"
    return Path(root) / (name + (f"_{tag}" if tag else ""))


def stale_reason(path: Path, source: str, data: dict, base: dict) -> str | None:
    """``None`` if the record at ``path`` is current (the ``lorakit/`` modules its run loaded
    unchanged, the same data files and base; ``source``: the whole package's hash, for older
    records); else why it must be (re)made."""
    if not path.exists():
        return "no record"
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return f"unreadable record ({type(err).__name__})"
    if source_changes(rec, whole=source):
        return "made from another lorakit/ source"
    if (rec.get("data") or {}).get("files") != data.get("files"):
        return "made on other data files"
    made = rec.get("results", {}).get("base", {})
    if (made.get("name"), made.get("n_params")) != (base["name"], base["n_params"]):
        return "made from another base"
    if other_build(made, base):
        return "made from another build of the base (its weights' SHA-256 differs)"
    return None


def _grid_run(ctx: dict, method: str, lr: float, seed: int) -> dict:
    """One run in a worker (or here): the context's base and data, this method, lr and seed."""
    settings = {**ctx["settings"], "lr": {**ctx["settings"]["lr"], method: lr}}
    start = time.perf_counter()
    out = run_method(
        ctx["base"],
        ctx["tokenizer"],
        method,
        ctx["data"],
        settings,
        ctx["device"],
        ctx["progress"],
        seed,
    )
    out["wall_s"] = time.perf_counter() - start
    return out


def run_grid(
    runs: Sequence[GridRun],
    preset: str | None = None,
    base_name: str = "auto",
    source="auto",
    out: str | Path | None = None,
    tag: str | None = None,
    jobs: int = 1,
    force: bool = False,
    device: str | None = None,
    progress: bool = True,
    budget_s: float | None = None,
    loaded: tuple | None = None,
) -> GridOutcome:
    """Make the runs of a grid that have no current record, writing one record per run.

    Parameters
    ----------
    runs : the grid (:func:`plan_grid`).
    preset, base_name, source : as :func:`lorakit.experiments.finetune.run_finetune`.
    out : the records' root folder (default ``data/runs``); see :func:`grid_folder`.
    jobs : runs at once (:func:`lorakit.experiments._jobs.run_jobs`).
    force : remake runs whose record is current.
    budget_s : start no run that the longest finished run of its method (of any method before
        one has finished) says would end after this many seconds from the start.
    loaded : an already loaded ``(model, tokenizer, info)``, instead of loading ``base_name``.
    """
    from lorakit.models import load_base

    preset = preset or get_preset()
    settings = preset_settings(preset)
    data_arg = source if isinstance(source, str) else str(getattr(source, "root", source))
    src = data_source(source)
    base, tokenizer, info = (
        loaded
        if loaded is not None
        else load_base(base_name, preset=preset, device="cpu", verbose=progress)
    )
    folder = grid_folder(out if out is not None else RUNS_DIR, preset, info.name, src.kind, tag)
    outcome = GridOutcome(folder)
    hashed, data_prov, base_rec = source_sha256(), src.provenance(), base_block(info, base)
    todo = []
    for run in runs:
        why = stale_reason(folder / f"{run.name}.json", hashed, data_prov, base_rec)
        if why is None and not force:
            outcome.current.append(run.name)
        else:
            todo.append(run)
    if not todo:
        return outcome
    data = load_task(tokenizer, settings, src, base.config.n_positions)
    template = template_row(data["test"], settings["bootstrap"])
    start, walls = time.perf_counter(), {}

    def over_budget(job: Job) -> bool:
        known = walls.get(job.args[0]) or max(walls.values(), default=0.0)
        late = budget_s is not None and time.perf_counter() - start + known > budget_s
        if late:
            outcome.not_started.append(job.label)
        return late

    def save(k: int, job: Job, result: dict) -> None:
        run = GridRun(*job.args)
        walls[run.method] = max(walls.get(run.method, 0.0), result["wall_s"])
        results = {
            "base": base_rec,
            "data": data["info"],
            "settings": settings_block({**settings, "lr": {run.method: run.lr}}, preset),
            "template": template,
            "methods": {run.method: result},
        }
        path = save_record(
            run.name,
            results,
            preset=preset,
            seed=run.seed,
            out_dir=folder,
            config={
                "base": base_name,
                "method": run.method,
                "lr": run.lr,
                "seed": run.seed,
                "data": data_arg,
                "jobs": jobs,
            },
            wall_s=result["wall_s"],
            data=src,
        )
        outcome.written.append(path)
        m = result["metrics"]
        print(
            f"[{k}/{len(todo)}] {run.name}: BLEU {m['bleu']:.1f}, SER {m['ser']:.1f}%, "
            f"{result['wall_s']:.0f} s -> {path}",
            flush=True,
        )

    context = {
        "base": base,
        "tokenizer": tokenizer,
        "data": data,
        "settings": settings,
        "progress": progress and jobs == 1,
    }
    run_jobs(
        _grid_run,
        [Job(r.name, (r.method, r.lr, r.seed), required=False) for r in todo],
        context,
        jobs,
        device=device,
        skip=over_budget,
        on_done=save,
    )
    return outcome


def build_parser(doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lorakit.experiments finetune",
        description=doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=nonnegative_int, default=[0])
    parser.add_argument(
        "--lora-lrs",
        nargs="+",
        type=positive_float,
        default=None,
        help="LoRA learning rates (default: the preset's)",
    )
    parser.add_argument(
        "--full-lrs",
        nargs="+",
        type=positive_float,
        default=None,
        help="full fine-tuning learning rates (default: the preset's)",
    )
    parser.add_argument(
        "--lora-lr",
        type=positive_float,
        default=None,
        help="one LoRA learning rate (the same as --lora-lrs LR)",
    )
    add_run_arguments(parser)
    parser.add_argument(
        "--out",
        type=writable_folder,
        default=None,
        help="root folder of the records (default data/runs)",
    )
    parser.add_argument("--tag", default=None, help="suffix of the records' folder name")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None, doc: str = "") -> GridOutcome:
    args = build_parser(doc or __doc__).parse_args(argv)
    preset = args.preset or get_preset()
    lrs = dict(preset_settings(preset)["lr"])
    lrs = {
        "lora": args.lora_lrs or ([args.lora_lr] if args.lora_lr else [lrs["lora"]]),
        "full": args.full_lrs or [lrs["full"]],
    }
    runs = plan_grid(args.methods, args.seeds, lrs)
    start = time.perf_counter()
    outcome = run_grid(
        runs,
        preset,
        args.base,
        args.data,
        args.out,
        args.tag,
        args.jobs,
        args.force,
        args.device,
        not args.no_progress,
        None if args.budget_min is None else 60 * args.budget_min,
    )
    print(
        f"{len(outcome.written)} runs made, {len(outcome.current)} already recorded "
        f"(current), {len(outcome.not_started)} not started (budget) in "
        f"{time.perf_counter() - start:.0f} s; records in {outcome.folder}"
    )
    if outcome.not_started:
        print("not started:", ", ".join(outcome.not_started))
    print(f"aggregate: python -m lorakit.experiments finetune-report --dir {outcome.folder}")
    return outcome
