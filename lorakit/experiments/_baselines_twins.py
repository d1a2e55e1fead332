"""Chapter 7's runs that chapter 6 has already made: imported, not trained again.

At chapter 6's settings, Table 3's FT row and its LoRA row (r = 4 on Wq, Wv, α = 32, dropout
0.1) are runs of chapter 6's grid: the same base build, data files, schedule, learning rate and
seed, trained by the same loop (:func:`lorakit.train.train`, deterministic kernels) and decoded by
the same beam search. Chapter 6's FT run and chapter 7's of one seed and rate were once both made
on the GPU (at commit 5f10954) and agreed in every loss, the dev loss, the metrics and all 552
texts; on the CPU the test suite checks the same for FT and LoRA.

So before it trains, the chapter 7 grid looks for each such run's *twin*: the record of the same
rate and seed in chapter 6's folder beside its own (``<folder>/../ch06_finetune_<preset>[...]``,
the name :func:`lorakit.experiments._finetune_grid.grid_folder` gives). A twin is used only when
it is current (chapter 6's own rule: its modules unchanged, the same data files and base build)
and its stored settings equal this grid's on every setting that shapes a run. Its texts are then
scored here and must give the twin's metrics (to a relative 1e-9: sums of floats on two machines
may differ in the last bit), and its parameter counts must be the method's. The chapter 7 record
keeps the twin's measurements and provenance (device, versions, commit, date, wall time), adds
what only chapter 7 computes (the share of texts that keep the name; the method's counts and
formula), names the twin under ``imported_from``, and lists the modules of both the run and this
import, so that ``python -m lorakit.runs check`` calls it stale when either changes. ``--force``
imports nothing and trains every run.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import math
from pathlib import Path

from lorakit import runs as _runs
from lorakit.baselines import apply_method
from lorakit.evaluate import score_all
from lorakit.experiments._baselines_run import (
    HISTORY_ROWS,
    _thin,
    describe_run,
    method_kwargs,
    name_kept,
)
from lorakit.experiments._finetune_grid import grid_folder, stale_reason
from lorakit.experiments._stats import bootstrap_cis
from lorakit.fileio import atomic_write

#: chapter 7's method -> chapter 6's name for it
CH6_METHOD = {"ft": "full", "lora": "lora"}
#: settings that shape a run and must be equal in both grids (the bootstrap is redone here)
SHAPING = (
    "train_mrs",
    "refs_per_mr",
    "dev_mrs",
    "test_mrs",
    "epochs",
    "batch_size",
    "warmup",
    "beams",
    "gen_batch",
    "max_new_tokens",
    "deterministic",
    "label_smoothing",
    "weight_decay",
)


def twin_id(spec: dict) -> str | None:
    """Chapter 6's run id for a chapter 7 run of FT or LoRA (``None`` for other methods):
    ``ft-lr5e-05-s0`` -> ``full-lr5e-05-s0``, ``lora-size4-lr0.001-s1`` -> ``lora-lr0.001-s1``."""
    method = CH6_METHOD.get(spec["method"])
    return None if method is None else f"{method}-lr{spec['lr']:g}-s{spec['seed']}"


def same_settings(spec: dict, settings: dict, twin_settings: dict) -> list[str]:
    """What differs between a chapter 7 run (``spec`` in a grid of ``settings``) and a chapter 6
    record whose stored settings are ``twin_settings``: ``[]`` when the two are one run."""
    diffs = [k for k in SHAPING if settings.get(k) != twin_settings.get(k)]
    if settings.get("steps") is not None:
        diffs.append("steps")
    if spec["method"] == "lora":
        ours = method_kwargs("lora", spec["size"], [])
        if ours != twin_settings.get("lora"):
            diffs.append("lora")
    return diffs


def import_twins(
    specs: list[dict],
    settings: dict,
    folder: str | Path,
    preset: str,
    config: dict,
    data,
    context: dict,
    force: bool = False,
    say=print,
) -> list[str]:
    """Write a chapter 7 record for each run of ``specs`` whose twin is a current chapter 6
    record (see the module's text) and that has no current record here; returns their ids.

    ``data``: the grid's :class:`lorakit.data.sources.DataSource`; ``context``: the grid's
    (``base``, ``base_info``, ``data`` with the test records). ``force`` imports nothing: every
    run is made again.
    """
    from lorakit.experiments._grid import load_runs

    if force:
        return []
    folder = Path(folder)
    base_rec, test = context["base_info"], context["data"]["test"]
    files = data.provenance()
    here = {r["name"] for r in load_runs(folder, files.get("files"), base_rec) if r["current"]}
    ch6 = grid_folder(folder.parent, preset, base_rec["name"], data.kind)
    whole, reports, imported = _runs.source_sha256(), {}, []
    for spec in specs:
        name = twin_id(spec)
        if name is None or spec["id"] in here:
            continue
        path = ch6 / f"{name}.json"
        if stale_reason(path, whole, files, base_rec) is not None:
            continue
        twin = json.loads(path.read_text())
        if same_settings(spec, settings, twin["results"]["settings"]):
            continue
        key = (spec["method"], spec["size"])
        if key not in reports:
            model = copy.deepcopy(context["base"])
            kwargs = method_kwargs(spec["method"], spec["size"], context["data"]["separator"])
            reports[key] = apply_method(model, spec["method"], **kwargs)
            del model
        rel = f"{ch6.name}/{path.name}"
        results = twin_results(spec, twin, rel, reports[key], settings, test)
        write_imported(spec, results, twin, folder, preset, config)
        imported.append(spec["id"])
        bleu = results["metrics"]["bleu"]
        say(f"{spec['id']}: imported from chapter 6's {rel} (BLEU {bleu:.1f})")
    return imported


def twin_results(spec: dict, twin: dict, rel: str, report, settings: dict, test) -> dict:
    """A chapter 7 run's results from its chapter 6 twin (the record ``twin``, at ``rel`` in the
    runs folder): the twin's measurements, this grid's scoring of its texts, and the method's
    counts from ``report`` (what :func:`lorakit.baselines.apply_method` returned). Raises
    ``ValueError`` when the twin's texts do not give its own metrics or its parameter counts
    differ: then the two are not one run."""
    r = twin["results"]
    run = r["methods"][CH6_METHOD[spec["method"]]]
    hyps = run["hyps"]
    if len(hyps) != len(test):
        raise ValueError(
            f"{twin['name']}: {len(hyps)} texts for {len(test)} test MRs; its test split is not "
            "this grid's: move it out of that folder, or run chapter 7's grid with --force."
        )
    refs, mrs = [list(t.refs) for t in test], [t.mr for t in test]
    here = score_all(hyps, refs, mrs=mrs)
    agree = set(here) == set(run["metrics"]) and all(
        math.isclose(here[k], run["metrics"][k], rel_tol=1e-9, abs_tol=1e-9) for k in here
    )
    if not agree or report.trainable != run["trainable_params"]:
        raise ValueError(
            f"{twin['name']} is not this run: its texts score {here} here against "
            f"{run['metrics']} in its record, or it trains {run['trainable_params']} weights "
            f"against {report.trainable}. Run chapter 7's grid with --force to make the run."
        )
    boot = run.get("bootstrap") or {}
    if any(ci.get("n") != settings["bootstrap"] for ci in boot.values()) or not boot:
        boot = {
            k: ci.to_dict()
            for k, ci in bootstrap_cis(hyps, refs, n=settings["bootstrap"], seed=0, mrs=mrs).items()
        }
    return {
        **describe_run(spec, report, settings, r["base"]),
        "decode_batch": settings["gen_batch"],
        "data": {k: r["data"][k] for k in ("train_mrs", "train_pairs", "dev_mrs", "test_mrs")},
        **{k: run[k] for k in ("steps", "tokens_seen", "peak_mem_mb", "dev_loss", "evals")},
        "final_loss": run["history"][-1]["loss"] if run["history"] else None,
        "history": _thin(run["history"], HISTORY_ROWS),
        **{
            k: run[k]
            for k in ("cuda_graphs", "step_time_s", "train_wall_s", "generate_wall_s", "hyps")
        },
        "metrics": run["metrics"],
        "name_kept": name_kept(mrs, hyps),
        "bootstrap": boot,
        "samples": [
            {"mr": t.mr, "generated": h, "references": list(t.refs[:2])}
            for t, h in zip(test[: settings["samples"]], hyps)
        ],
        "imported_from": rel,
    }


def write_imported(
    spec: dict, results: dict, twin: dict, folder: Path, preset: str, config: dict
) -> Path:
    """Write the chapter 7 record of an imported run: the twin's provenance (it made the
    measurements), the modules of both the run and this import, and where it came from."""
    files = {**_runs.loaded_sources(), **twin["source_files"]}
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    record = {
        "name": spec["id"],
        "results": results,
        "preset": preset,
        "seed": spec["seed"],
        "config": {**config, "run": spec, "imported_from": results["imported_from"]},
        **{k: twin[k] for k in ("device", "versions", "commit")},
        "source_sha256": _runs.source_sha256(_runs.PACKAGE_DIR, files),
        "source_files": dict(sorted(files.items())),
        "data": twin["data"],
        "date": twin["date"],
        "wall_s": twin["wall_s"],
        "imported": {"commit": _runs._commit(), "date": now},
    }
    text = json.dumps(record, indent=2) + "\n"
    path = folder / f"{spec['id']}.json"
    folder.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
