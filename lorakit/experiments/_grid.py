"""One record per run, resumable: the machinery behind the grids of chapters 7 and 8.

A grid (methods x sizes x learning rates x seeds, or targets x ranks x seeds) is a list of runs,
each named by a *run id* built from its settings (:func:`run_id`, e.g. ``lora-r4-lr0.0002-s1``).
Each finished run is written at once as its own record, ``<folder>/<run id>.json``, through
:func:`lorakit.runs.save_record` (so it carries its provenance: the hash of the ``lorakit/``
source, the data's file hashes, the device, versions, date and wall time). The folder is
``data/runs/<grid>_<preset>/`` unless ``--out`` names another.

* **Resumable.** A run whose record is *current* (made by this ``lorakit/`` source, on data
  files of the same SHA-256s) is skipped (:func:`todo`), so a grid can be spread over several
  GPU loans: run the command again and it makes only what is missing. ``force=True``
  (``--force``) makes every run again. A record made by other code or on other data does not
  count as done: the run is made again and its record replaced. Another base or data source
  gets its own folder (:func:`grid_dir`).
* **Aggregated later.** :func:`load_runs` reads whatever records a folder holds; the chapter's
  report builds its tables from them and lists the runs of the plan that have no record
  (:func:`missing`) as *not run*; nothing is estimated or filled in.
* **Tensors.** A run may return arrays under ``"_tensors"`` (chapter 8's LoRA factors): they go
  to ``<folder>/<run id>.safetensors`` (:func:`save_tensors`) and the record names that file;
  :func:`load_tensors` reads them back.
* **GPU minutes.** :func:`gpu_minutes` sums the runs' wall times.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from lorakit.experiments._jobs import Job, run_jobs
from lorakit.runs import RUNS_DIR, save_record, source_changes, source_sha256

TENSORS = "_tensors"  # a run's results may carry arrays under this key: written beside it


def run_id(**fields: Any) -> str:
    """A file-safe name from ``fields`` in the order given: ``run_id(m="lora", r=4, s=0)`` ->
    ``"lora-r4-s0"``. The first field's value stands alone; the others are ``key + value``;
    ``None`` values are left out; lists are joined with ``+``."""
    parts = []
    for i, (key, value) in enumerate(fields.items()):
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = "+".join(str(v) for v in value)
        text = (
            str(value)
            if i == 0
            else f"{key}{value:g}"
            if isinstance(value, float)
            else f"{key}{value}"
        )
        parts.append(text.replace("/", "_").replace(" ", ""))
    return "-".join(parts)


def grid_dir(
    grid: str,
    preset: str,
    out: str | Path | None = None,
    base: str = "auto",
    data_kind: str = "synthetic",
) -> Path:
    """Where a grid's records go: ``out`` if given, else ``data/runs/<grid>_<preset>``, with
    ``_<base>_<data>`` added unless the base is the default (``auto`` or ``offline``) and the
    data the shipped synthetic set, so that runs on other bases or data never mix."""
    if out is not None:
        return Path(out)
    name = f"{grid}_{preset}"
    if base not in ("auto", "offline") or data_kind != "synthetic":
        name += f"_{str(base).replace('/', '-')}_{data_kind}"
    return RUNS_DIR / name


def other_build(made: dict | None, base: dict | None) -> bool:
    """Whether a record's base block ``made`` names another build of the base than ``base``:
    both carry a ``weights_sha256`` and the two differ (a record without one cannot tell).

    The offline base is pretrained with deterministic kernels, so a rebuild on the same GPU and
    software gives the same weights; another GPU or software version (or a build without those
    kernels) may give another draw, and a grid whose runs start from different builds would mix
    that noise into its seed spread."""
    a, b = (made or {}).get("weights_sha256"), (base or {}).get("weights_sha256")
    return bool(a and b and a != b)


def _same_data(record: dict, files: dict | None) -> bool:
    if files is None:
        return True
    return (record.get("data") or {}).get("files") == files


def load_runs(
    folder: str | Path, data_files: dict | None = None, base: dict | None = None
) -> list[dict]:
    """Every record in ``folder`` (sorted by file name), each with ``"current"`` added: whether
    it was made by the ``lorakit/`` source here (:func:`lorakit.runs.source_changes`; and, when
    ``data_files`` is given, on data files of those SHA-256s; when ``base`` is given, a base
    block, from the same build of the base: :func:`other_build`). A missing folder gives ``[]``;
    a file that is not a readable record is an error that names it."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    here, out = source_sha256(), []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(
                f"{path} is not a readable record ({type(err).__name__}: {err}); "
                "delete it and run the grid again to remake that run."
            ) from err
        if isinstance(record, dict) and "results" in record:
            current = (
                not source_changes(record, whole=here)
                and _same_data(record, data_files)
                and not other_build(record["results"].get("base"), base)
            )
            out.append({**record, "current": current})
    return out


def todo(
    specs: Sequence[dict],
    folder: str | Path,
    force: bool = False,
    data_files: dict | None = None,
    base: dict | None = None,
) -> list[dict]:
    """The runs of ``specs`` (each with an ``"id"``) still to make: all of them with ``force``,
    else those without a current record (:func:`load_runs`; ``base``: the base block of the base
    loaded now, so that a record from another build of it is made again)."""
    if force:
        return list(specs)
    done = {r["name"] for r in load_runs(folder, data_files, base) if r["current"]}
    return [s for s in specs if s["id"] not in done]


def missing(specs: Sequence[dict], runs: Sequence[dict]) -> list[dict]:
    """The runs of the plan ``specs`` that have no record among ``runs`` (any source)."""
    have = {r["name"] for r in runs}
    return [s for s in specs if s["id"] not in have]


def gpu_minutes(runs: Sequence[dict]) -> float:
    """The device minutes the records took: the sum of their wall times, in minutes."""
    return sum(float(r.get("wall_s") or 0.0) for r in runs) / 60.0


def run_grid(
    fn: Callable,
    specs: Sequence[dict],
    context: dict,
    *,
    folder: str | Path | None,
    preset: str,
    config: dict,
    data: Any = None,
    jobs: int = 1,
    device: str | None = None,
    force: bool = False,
    budget_s: float | None = None,
    on_done: Callable[[int, int, dict, dict], None] | None = None,
) -> list[dict]:
    """Make the runs of ``specs`` that are still to do; write each record as it finishes.

    Parameters
    ----------
    fn : a module-level ``fn(context, spec) -> dict`` (the run's results; picklable).
    specs : the plan, each a dict with a unique ``"id"`` and ``"seed"``.
    context : what every run shares (``context["base"]`` the base model; see
        :func:`lorakit.experiments._jobs.run_jobs`).
    folder : where the records go; ``None`` keeps them in memory only (the notebooks' live runs).
    preset, config, data : the records' provenance (:func:`lorakit.runs.save_record`).
    jobs : runs at once, each in a worker process.
    force : make every run again, even those with a current record.
    budget_s : start no run once the time spent plus the mean time of a finished run (divided by
        ``jobs``) would pass this many seconds; the runs not started are left for the next call
        (a GPU loan of fixed length).
    on_done : ``on_done(k, n, spec, results)`` after each run (progress lines).

    Returns
    -------
    list[dict]
        The records made now (results under ``"results"``, provenance beside), in plan order.
    """
    files = None if data is None or isinstance(data, dict) else data.provenance().get("files")
    base = context.get("base_info")
    specs = list(specs) if folder is None else todo(specs, folder, force, files, base)
    made: dict[str, dict] = {}

    def finish(k: int, job: Job, result: tuple[dict, float]) -> None:
        spec, (results, wall) = job.args[0], result
        arrays = results.pop(TENSORS, None)
        tensors = None if arrays is None else {k: torch.as_tensor(v) for k, v in arrays.items()}
        record = {
            "name": spec["id"],
            "results": results,
            "wall_s": wall,
            "current": True,
            "tensors": tensors,
        }
        if folder is not None:
            if tensors is not None:
                results["tensors_file"] = save_tensors(tensors, Path(folder) / spec["id"]).name
            path = save_record(
                spec["id"],
                results,
                preset=preset,
                config={**config, "run": spec},
                wall_s=wall,
                seed=spec.get("seed"),
                out_dir=folder,
                data=data,
            )
            record = {**json.loads(path.read_text()), "current": True, "tensors": tensors}
        made[spec["id"]] = record
        if on_done is not None:
            on_done(k, len(specs), spec, results)

    start, walls = time.perf_counter(), []

    def over_budget(job: Job) -> bool:
        mean = sum(walls) / len(walls) / jobs if walls else 0.0
        return time.perf_counter() - start + mean > budget_s

    def done(k: int, job: Job, result: tuple[dict, float]) -> None:
        walls.append(result[1])
        finish(k, job, result)

    todo_jobs = [Job(spec["id"], (spec,), required=budget_s is None) for spec in specs]
    run_jobs(
        _timed,
        todo_jobs,
        {**context, "_fn": fn},
        jobs,
        device=device,
        skip=None if budget_s is None else over_budget,
        on_done=done,
    )
    return [made[s["id"]] for s in specs if s["id"] in made]


def save_tensors(tensors: dict, stem: str | Path) -> Path:
    """Write ``tensors`` beside a record as ``<stem>.safetensors``, small: bf16 for names ending
    in ``.B`` (LoRA's B, whose entries can be tiny), fp16 for the rest."""
    from safetensors.torch import save_file

    from lorakit.fileio import atomic_write

    small = {
        k: v.to(torch.bfloat16 if k.endswith(".B") else torch.float16).contiguous()
        for k, v in tensors.items()
    }
    path = Path(f"{stem}.safetensors")
    return atomic_write(path, lambda tmp: save_file(small, str(tmp)))


def load_tensors(folder: str | Path, record: dict) -> dict | None:
    """The tensors of ``record`` (fp32): kept in memory by a live run, else read from the file
    its results name (``tensors_file``); ``None`` for a record without tensors."""
    if record.get("tensors") is not None:
        return {k: v.float() for k, v in record["tensors"].items()}
    name = record["results"].get("tensors_file")
    if name is None:
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / name
    try:
        return {k: v.float() for k, v in load_file(str(path)).items()}
    except (SafetensorError, OSError) as err:
        raise ValueError(
            f"{path} (the tensors of record {record['name']}) cannot be read "
            f"({type(err).__name__}: {err}); run the grid again with --force to "
            "remake that run."
        ) from err


def add_run_arguments(parser, jobs_help: str = "runs at once") -> None:
    """The options of every grid command on how its runs are made: base, device, data, jobs,
    force and budget (``parser`` is an ``argparse.ArgumentParser``)."""
    from lorakit.cli import device, positive_float, positive_int

    parser.add_argument("--base", default="auto", help="load_base name (default auto)")
    parser.add_argument("--device", type=device, default=None)
    parser.add_argument(
        "--data",
        default="auto",
        help="auto (default), synthetic, real, or a folder with the splits",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help=f"{jobs_help}, each in a worker process (default 1)",
    )
    parser.add_argument("--force", action="store_true", help="make every run again")
    parser.add_argument(
        "--budget-min",
        type=positive_float,
        default=None,
        help="start no run that would end past this many minutes (the rest waits for the next "
        "call)",
    )


def add_grid_arguments(parser, grid: str, jobs_help: str = "runs at once") -> None:
    """:func:`add_run_arguments`, then ``--out`` (the records' folder) and ``--list``.

    ``parser`` is an ``argparse.ArgumentParser``; ``grid`` names the default records folder
    (``data/runs/<grid>_<preset>``).
    """
    from lorakit.cli import writable_folder

    add_run_arguments(parser, jobs_help)
    parser.add_argument(
        "--out",
        type=writable_folder,
        default=None,
        help=f"folder of the records (default data/runs/{grid}_<preset>)",
    )
    parser.add_argument("--list", action="store_true", help="print the plan and what is done")


def _timed(ctx: dict, spec: dict) -> tuple[dict, float]:
    start = time.perf_counter()
    results = ctx["_fn"](ctx, spec)
    return results, time.perf_counter() - start
