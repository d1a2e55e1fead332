"""Benchmarks that report ratios measured in one run: ``python -m lorakit.bench NAME``.

Results go to ``data/runs/bench/``. Speed and memory goals live here, never in timed tests.
A ``--small`` smoke run writes to a temporary folder unless ``--out`` says otherwise, and never
writes over a full-size record (one whose preset is not ``small``), wherever it is.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

SMALL_DIR = Path(tempfile.gettempdir()) / "lorakit-bench-small"


def bench_target(default_name: str, args: argparse.Namespace) -> Path:
    """The record's path for ``args`` (``--out`` folder or ``.json`` file), checked before the run.

    Default: ``data/runs/bench/NAME.json``, or ``SMALL_DIR/NAME.json`` for ``--small``.

    Raises
    ------
    ValueError
        If the folder cannot be written, or a ``--small`` run would replace a full-size record.
    """
    from lorakit.cli import check_writable
    from lorakit.runs import RUNS_DIR

    out = Path(args.out) if args.out else SMALL_DIR if args.small else RUNS_DIR / "bench"
    name = default_name
    if out.suffix == ".json":
        out, name = out.parent, out.stem
    try:
        check_writable(out)
    except argparse.ArgumentTypeError as e:
        raise ValueError(f"--out {e}") from None
    target = out / f"{name}.json"
    if args.small and target.is_file():
        try:
            preset = json.loads(target.read_text()).get("preset")
        except (ValueError, OSError, AttributeError):
            preset = None
        if preset != "small":
            raise ValueError(
                f"{target} holds a recorded full-size run (preset {preset!r}); a --small "
                "smoke run does not write over it. Pass another --out, or leave --out "
                f"out (smoke runs then go to {SMALL_DIR})."
            )
    return target


def save_bench_record(default_name: str, args: argparse.Namespace, results: dict, start: float):
    """Write a benchmark's record where :func:`bench_target` says; returns its path."""
    from lorakit.presets import get_preset
    from lorakit.runs import save_record

    target = bench_target(default_name, args)
    config = {k: v for k, v in vars(args).items() if k != "out"}
    return save_record(
        target.stem,
        results,
        preset="small" if args.small else get_preset(),
        config=config,
        wall_s=time.perf_counter() - start,
        out_dir=target.parent,
    )


def bench_parser(
    name: str, description: str | None, small_help: str, device: bool = True
) -> argparse.ArgumentParser:
    """The command line every benchmark starts from: ``--device``, ``--small`` and ``--out``.

    ``name`` is the command (``"train-step"``), ``description`` its module docstring and
    ``small_help`` what its ``--small`` run (also spelled ``--smoke``) is. ``device=False``
    leaves ``--device`` to the command (one that accepts only some devices).
    """
    from lorakit.cli import device as device_arg
    from lorakit.cli import writable_output

    p = argparse.ArgumentParser(
        prog=f"python -m lorakit.bench {name}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if device:
        p.add_argument(
            "--device",
            type=device_arg,
            default=None,
            help="cuda, cpu, ... (default: picked by hardware)",
        )
    p.add_argument("--small", "--smoke", dest="small", action="store_true", help=small_help)
    p.add_argument(
        "--out",
        type=writable_output,
        default=None,
        help="directory, or a .json file (default data/runs/bench; --small: a temp folder)",
    )
    return p


def bench_settings(
    args: argparse.Namespace, full: dict, small: dict, keys: Sequence[str] = ()
) -> dict:
    """The run's settings: a copy of ``small`` for ``--small`` (else of ``full``), with each
    setting named in ``keys`` replaced by its command-line value where one was given."""
    settings = dict(small if args.small else full)
    settings.update({k: getattr(args, k) for k in keys if getattr(args, k) is not None})
    return settings


def parse_bench_args(
    parser: argparse.ArgumentParser, default_name: str, argv: list[str] | None
) -> argparse.Namespace:
    """Parse a benchmark's command line and check its record's target (:func:`bench_target`) now,
    so that a bad ``--out`` is an argparse error before the run, not a failure after it."""
    args = parser.parse_args(argv)
    try:
        bench_target(default_name, args)
    except ValueError as err:
        parser.error(str(err))
    return args
