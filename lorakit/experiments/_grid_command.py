"""What the grid commands of chapters 7 and 8 share around their runs.

``python -m lorakit.experiments baselines`` and ``which-rank`` (and their ``run_*`` functions
that the notebooks call) do the same things around their own runs: load the base and the data,
write the records that are not runs (the template's scores, the base weights) once, say how
many runs are left, make them (:func:`lorakit.experiments._grid.run_grid`) with a progress line
each, and list the plan (``--list``).
:class:`GridCall` holds how one call makes its runs; the functions here do the rest. Their
settings are tables of one column per preset (:func:`by_preset`), overridden by
:func:`settings_for`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lorakit.data.sources import DataSource, data_source
from lorakit.experiments import _grid
from lorakit.presets import PRESETS
from lorakit.runs import save_record


def by_preset(table: dict[str, tuple], **same) -> dict[str, dict]:
    """Settings per preset from a table with one row per setting and one column per preset
    (``ci``, ``cpu``, ``gpu``, in :data:`lorakit.presets.PRESETS`'s order); ``same`` holds the
    settings every preset shares."""
    for key, row in table.items():
        if len(row) != len(PRESETS):
            raise ValueError(f"setting {key!r} has {len(row)} values, one per preset {PRESETS}")
    return {p: {**{k: row[i] for k, row in table.items()}, **same} for i, p in enumerate(PRESETS)}


def settings_for(presets: dict[str, dict], preset: str, overrides: dict | None = None) -> dict:
    """The settings of ``preset`` in ``presets`` with ``overrides`` applied.

    Raises
    ------
    ValueError
        An unknown preset, or an override of a setting the preset does not have.
    """
    if preset not in presets:
        raise ValueError(f"Unknown preset {preset!r}; use one of {', '.join(presets)}.")
    unknown = sorted(set(overrides or {}) - set(presets[preset]))
    if unknown:
        raise ValueError(f"Unknown settings {unknown}; choose from {sorted(presets[preset])}.")
    return {**presets[preset], **(overrides or {})}


def load_inputs(
    preset: str,
    base_name: str = "auto",
    loaded: tuple | None = None,
    source=None,
    progress: bool = True,
) -> tuple[DataSource, tuple]:
    """``(data source, (model, tokenizer, info))`` of a grid: ``source`` resolved (default
    ``"auto"``), and ``loaded`` as given or else ``base_name`` loaded on the CPU
    (:func:`lorakit.models.load_base`)."""
    from lorakit.models import load_base

    src = data_source(source if source is not None else "auto")
    if loaded is None:
        loaded = load_base(base_name, preset=preset, device="cpu", verbose=progress)
    return src, loaded


@dataclass
class GridCall:
    """How one call of a grid command makes its runs and where their records go.

    ``folder`` ``None`` keeps the records in memory (a notebook's live run: every run of the
    plan is made); ``preset``, ``config`` and ``data`` are the records' provenance
    (:func:`lorakit.runs.save_record`); ``jobs``, ``device``, ``force`` and ``budget_min`` as
    in :func:`lorakit.experiments._grid.run_grid` (``budget_min`` in minutes); ``progress``
    prints a line per run.
    """

    folder: str | Path | None
    preset: str
    config: dict
    data: DataSource
    jobs: int = 1
    device: str | None = None
    force: bool = False
    budget_min: float | None = None
    progress: bool = True

    def say(self, text: str) -> None:
        if self.progress:
            print(text)

    @property
    def files(self) -> dict | None:
        """The SHA-256s of the data files (a record on other files is not current)."""
        return self.data.provenance().get("files")

    def save_once(self, name: str, results: dict, done: set[str]) -> None:
        """Write the record ``name`` (one that is not a run: the template's scores, the base
        weights) unless there is no folder or it is among the current records ``done`` (and
        not ``force``)."""
        if self.folder is not None and (self.force or name not in done):
            save_record(
                name,
                results,
                preset=self.preset,
                config=self.config,
                wall_s=0.0,
                out_dir=self.folder,
                data=self.data,
            )

    def done(self, base: dict | None = None) -> set[str]:
        """The names of the current records in the folder (none without a folder); ``base``:
        the base block of the base loaded now (a record from another build is not current)."""
        if self.folder is None:
            return set()
        return {r["name"] for r in _grid.load_runs(self.folder, self.files, base) if r["current"]}

    def run(
        self,
        fn: Callable,
        specs: Sequence[dict],
        context: dict,
        tag: str,
        line: Callable[[dict, dict], str],
    ) -> list[dict]:
        """Say how many runs of ``specs`` are left (``tag``, e.g. ``"ch07"``, heads the line),
        make them (:func:`lorakit.experiments._grid.run_grid`) and print ``line(spec,
        results)`` and the time spent as each ends; returns the records made now."""
        left = (
            specs
            if self.folder is None
            else _grid.todo(specs, self.folder, self.force, self.files, context.get("base_info"))
        )
        label = context["data"]["label"]
        self.say(
            f"[{tag} {self.preset}] {len(left)} of {len(specs)} runs to make, "
            f"{self.jobs} at a time; {label}"
        )
        start = time.perf_counter()

        def on_done(k: int, n: int, spec: dict, results: dict) -> None:
            elapsed = time.perf_counter() - start
            self.say(f"[{k:2d}/{n}] {line(spec, results)} | {elapsed:.0f} s elapsed")

        return _grid.run_grid(
            fn,
            specs,
            context,
            folder=self.folder,
            preset=self.preset,
            config=self.config,
            data=self.data,
            jobs=self.jobs,
            device=self.device,
            force=self.force,
            on_done=on_done,
            budget_s=None if self.budget_min is None else 60 * self.budget_min,
        )


def list_plan(specs: Sequence[dict], folder: Path, force: bool, data: DataSource) -> None:
    """Print each run of the plan as "to do" or "done" in ``folder``, then how many are left."""
    left = {s["id"] for s in _grid.todo(specs, folder, force, data.provenance().get("files"))}
    for s in specs:
        print(f"{'to do' if s['id'] in left else 'done '}  {s['id']}")
    print(f"{len(left)} of {len(specs)} runs to do in {folder}")


def overrides_from(args: argparse.Namespace, names: Sequence[str]) -> dict:
    """The settings that command-line options override: ``{name: value}`` for each of ``names``
    whose option was given (not ``None``)."""
    return {k: getattr(args, k) for k in names if getattr(args, k) is not None}


def refuse_schedule_overrides(
    parser: argparse.ArgumentParser, args: argparse.Namespace, names: Sequence[str]
) -> None:
    """Stop (an argparse error) when an option of ``names`` that changes every run's schedule was
    given without ``--out``: a run's record is named by its configuration and seed only, so a
    shortened run written into the preset's folder would count there as a finished run of the
    plan, and the real one would be skipped."""
    given = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n, None) is not None]
    if given and args.out is None:
        parser.error(
            f"{', '.join(given)} change(s) every run's schedule, but records are named by "
            "configuration and seed only, so in the preset's folder such runs would count as "
            "finished runs of the plan. Give --out DIR (a folder of their own) for them."
        )


def run_options(args: argparse.Namespace, folder: Path, src: DataSource, overrides: dict) -> dict:
    """The keyword arguments of a ``run_*`` function that the options of
    :func:`lorakit.experiments._grid.add_grid_arguments` give (``source``, ``jobs``, ``out``,
    ``force``, ``budget_min``, ``overrides`` and the records' ``config``)."""
    return {
        "source": src,
        "jobs": args.jobs,
        "out": folder,
        "force": args.force,
        "budget_min": args.budget_min,
        "overrides": overrides,
        "config": {"base": args.base, "data": args.data, "overrides": overrides},
    }
