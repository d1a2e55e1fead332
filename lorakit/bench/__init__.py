"""Benchmarks that report ratios measured in one run: ``python -m lorakit.bench NAME``.

Results go to ``data/runs/bench/``. Speed and memory goals live here, never in timed tests.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def save_bench_record(default_name: str, args: argparse.Namespace, results: dict, start: float):
    """Write a benchmark's record: ``--out`` may be a folder or a ``.json`` file (default data/runs/bench)."""
    from lorakit.presets import get_preset
    from lorakit.runs import RUNS_DIR, save_record

    out = Path(args.out) if args.out else RUNS_DIR / "bench"
    name = default_name
    if out.suffix == ".json":
        out, name = out.parent, out.stem
    config = {k: v for k, v in vars(args).items() if k != "out"}
    return save_record(name, results, preset="small" if args.small else get_preset(),
                       config=config, wall_s=time.perf_counter() - start, out_dir=out)
