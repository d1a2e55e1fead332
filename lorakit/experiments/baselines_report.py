"""Chapter 7's tables and verdicts from whatever run records exist.

``python -m lorakit.experiments baselines-report [--preset P] [--out DIR]`` reads the records of
:mod:`lorakit.experiments.baselines` (``data/runs/ch07_baselines_<preset>/``) and prints Table 3,
Figure 2's points, the paper's claims with a verdict each, the runs of the plan that have no
record (*not run*: never estimated or filled in) and the GPU minutes the records took.

Per configuration (method, size, learning rate) the seeds' values are summarised by
:func:`lorakit.experiments._stats.seed_summary`; each run also carries bootstrap 95% intervals
over the test MRs. Where a method was run at several learning rates, Table 3 shows the rate
with the lowest mean validation loss (the test set never chooses). Verdicts use
:func:`lorakit.experiments._stats.verdict` with the rule ``"max-noise"`` (:data:`RULE_TEXT`).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from lorakit.experiments import _grid, _report
from lorakit.experiments._baselines_settings import (
    GRID,
    LABELS,
    PRESETS,
    SIZE_NAME,
    TABLE3,
    plan,
    settings_for,
)
from lorakit.experiments._report import (  # noqa: F401  (re-exported for the chapter)
    NOT_RUN,
    RULE,
    RULE_TEXT,
    claim_verdict,
    claims_text,
)
from lorakit.experiments._stats import verdict

METRICS = (("bleu", ".1f"), ("rouge_l", ".1f"), ("nist", ".2f"), ("ser", ".1f"))
# what a configuration's summary takes from its first run (the same for every seed)
_SAME_FOR_SEEDS = (
    "method label size lr trainable_params total_params formula formula_text schedule data".split()
)


def split_records(records: list[dict]) -> tuple[list[dict], dict | None]:
    """``(runs, template)``: the runs' results, and the template's results (or ``None``)."""
    runs = [r["results"] for r in records if r["name"] != "template"]
    template = next((r["results"] for r in records if r["name"] == "template"), None)
    return runs, template


def summarise(runs: list[dict]) -> dict:
    """One configuration's runs (one per seed): per metric a seed summary and the mean
    bootstrap half-width; the seeds, dev loss and the share of texts that keep the name."""
    out = {"seeds": sorted(r["seed"] for r in runs), "n": len(runs), "metrics": {}}
    for key, _ in METRICS:
        values = [r["metrics"][key] for r in runs if r["metrics"].get(key) is not None]
        cis = [r["bootstrap"][key] for r in runs if key in r.get("bootstrap", {})]
        out["metrics"][key] = _report.metric_summary(values, cis)
    out["dev_loss"] = statistics.fmean(r["dev_loss"] for r in runs)
    kept = [r["name_kept"] for r in runs if r.get("name_kept") is not None]
    out["name_kept"] = statistics.fmean(kept) if kept else None
    return {**out, **{k: runs[0].get(k) for k in _SAME_FOR_SEEDS}}


def _configs(runs: list[dict], method: str, size) -> dict[float, list[dict]]:
    by_lr: dict[float, list[dict]] = {}
    for r in runs:
        if r["method"] == method and r["size"] == size:
            by_lr.setdefault(r["lr"], []).append(r)
    return by_lr


def table3(runs: list[dict], settings: dict) -> dict[str, dict]:
    """Table 3: per method (paper order) the summary at its size and chosen learning rate.

    A method with no run has ``{"label", "size", "status": "not run"}``. ``others`` lists the
    learning rates not chosen, with their mean dev loss and seeds.
    """
    out = {}
    for m in TABLE3:
        size = settings["sizes"].get(m)
        by_lr = _configs(runs, m, size)
        if not by_lr:
            out[m] = {"label": LABELS[m], "size": size, "status": NOT_RUN}
            continue
        rows = {lr: summarise(rs) for lr, rs in by_lr.items()}
        best = min(rows, key=lambda lr: rows[lr]["dev_loss"])
        out[m] = {
            **rows[best],
            "status": "run",
            "runs": by_lr[best],
            "others": [
                {"lr": lr, "dev_loss": r["dev_loss"], "seeds": r["seeds"]}
                for lr, r in sorted(rows.items())
                if lr != best
            ],
        }
    return out


def figure2(runs: list[dict], settings: dict) -> dict[str, dict]:
    """Figure 2: per swept method, one point per size (at the method's first learning rate)."""
    out = {}
    for m, sizes in settings["sweep"].items():
        lr = settings["lrs"][m][0]
        points = []
        for size in sizes:
            rs = _configs(runs, m, size).get(lr, [])
            points.append(
                {**summarise(rs), "status": "run"} if rs else {"size": size, "status": NOT_RUN}
            )
        out[m] = {"label": LABELS[m], "size_name": SIZE_NAME[m], "lr": lr, "points": points}
    return out


def gpu_minutes(records: list[dict]) -> float:
    """Device minutes of the records this grid made (:func:`lorakit.experiments._grid.gpu_minutes`):
    runs imported from chapter 6 count there, not here."""
    return _grid.gpu_minutes([r for r in records if not imported_from(r)])


def imported_from(record: dict) -> str | None:
    """The chapter 6 record a run was imported from (``None``: made by this grid); see
    :mod:`lorakit.experiments._baselines_twins`."""
    return (record.get("results") or {}).get("imported_from")


def _bleu(row: dict) -> list[float]:
    return list(row["metrics"]["bleu"].get("values", [])) if row.get("status") == "run" else []


def _cis(row: dict) -> list:
    return row["metrics"]["bleu"]["cis"] if row.get("status") == "run" else []


def compare(a: dict, b: dict):
    """The verdict on BLEU of row ``a`` against row ``b`` (rule :data:`RULE`)."""
    return verdict(_bleu(a), _bleu(b), _cis(a), _cis(b), rule=RULE)


def _mean(row: dict) -> str:
    return _report.seeds_text(row["metrics"]["bleu"]) if row.get("status") == "run" else NOT_RUN


def _sweep_ends(points: list[dict]) -> tuple[dict | None, dict | None, str]:
    """``(best smaller point, largest point, "")`` of a Figure 2 sweep, the best smaller one
    chosen by mean validation loss; or ``(None, None, why)`` when the plan's largest size or
    every smaller one is not run (a claim about the largest size needs that size run)."""
    if not points or points[-1]["status"] != "run":
        size = points[-1]["size"] if points else "?"
        return None, None, f"the largest size of the sweep, {size}, is not run"
    smaller = [p for p in points[:-1] if p["status"] == "run"]
    if not smaller:
        return None, None, "no smaller size is run"
    return min(smaller, key=lambda p: p["dev_loss"]), points[-1], ""


def claims(t3: dict, f2: dict) -> list[dict]:
    """The paper's Table 3 and Figure 2 claims: ``{"chapter", "claim", "paper", "ours",
    "verdict", "why"}``; ``verdict`` is "reproduced", "not reproduced", "undetermined" or
    "not run" (a side has no run)."""
    rows = []

    def add(claim: str, paper: str, a: dict, b: dict, kind: str, what: str) -> None:
        if a.get("status") != "run" or b.get("status") != "run":
            rows.append(_report.claim_row(7, claim, paper))
            return
        ours = f"{what}: {_mean(a)} vs {_mean(b)} BLEU"
        rows.append(_report.judged_row(7, claim, paper, ours, compare(a, b), kind))

    lora = t3["lora"]
    add(
        "LoRA matches or beats full fine-tuning",
        "LoRA 70.4 vs FT 68.2 BLEU (GPT-2 M)",
        lora,
        t3["ft"],
        "matches",
        "LoRA vs FT",
    )
    for m, paper in (
        ("ft_top2", "70.4 vs 68.1"),
        ("adapter_l", "70.4 vs 66.3 (0.37M)"),
        ("adapter_h", "70.4 vs 67.3 (11.09M)"),
        ("prefix_layer", "70.4 vs 69.7"),
    ):
        add(f"LoRA beats {LABELS[m]}", paper, lora, t3[m], "beats", f"LoRA vs {LABELS[m]}")
    eff = [
        m
        for m in TABLE3
        if m != "lora"
        and t3[m].get("status") == "run"
        and t3["ft"].get("status") == "run"
        and t3[m]["trainable_params"] < 0.01 * t3["ft"]["trainable_params"]
    ]
    # the best other method is chosen by validation loss, never by the test BLEU it is judged on
    rival = min(eff, key=lambda m: t3[m]["dev_loss"]) if eff else None
    add(
        "LoRA is the best method training < 1% of the weights",
        "LoRA 70.4, above every efficient baseline",
        lora,
        t3[rival] if rival else {"status": NOT_RUN},
        "beats",
        f"LoRA vs the best other, {LABELS[rival]}" if rival else "",
    )
    for m in ("prefix_embed", "prefix_layer"):
        if m not in f2:
            continue
        claim = f"{LABELS[m]} degrades with many special tokens"
        paper = "Figure 2 (GPT-3): drops past 256 (PreEmbed) / 32 (PreLayer)"
        best, largest, why = _sweep_ends(f2[m]["points"])
        if why:
            rows.append(_report.claim_row(7, claim, paper, why=why))
            continue
        add(
            claim,
            paper,
            best,
            largest,
            "beats",
            f"best smaller size by dev loss, {best['size']}, vs the largest, {largest['size']}",
        )
    for m in ("lora", "adapter_h"):
        best, largest, why = _sweep_ends(f2.get(m, {}).get("points", []))
        if not why:
            add(
                f"{LABELS[m]} does not degrade as it grows",
                "Figure 2: level or better with size",
                largest,
                best,
                "matches",
                f"the largest, {largest['size']}, vs the best smaller size by dev loss, "
                f"{best['size']}",
            )
    return rows


def _cell(row: dict, key: str, fmt: str) -> str:
    return _report.mean_cell(row["metrics"][key], fmt, interval=key != "nist") or "n/a"


def table3_text(t3: dict, template: dict | None) -> str:
    """Table 3 as text: the template's row, then per method trainable parameters, the paper's
    formula, learning rate, seeds, BLEU, ROUGE-L, NIST, SER (%) as mean ± seed sd [± mean
    bootstrap half-width], and the percentage of texts that keep the restaurant's name."""
    metrics = ("BLEU", "ROUGE-L", "NIST", "SER %")  # the columns of METRICS
    rows = [("method", "trainable", "formula", "lr", "seeds", *metrics, "name %")]
    if template is not None:
        t = {"metrics": _report.template_metrics(template, [k for k, _ in METRICS])}
        rows.append(
            (
                "template",
                "0",
                "-",
                "-",
                "-",
                *(_cell(t, k, f) for k, f in METRICS),
                f"{template.get('name_kept', 100.0):.0f}",
            )
        )
    for m, r in t3.items():
        size = "" if r["size"] is None else f" ({SIZE_NAME[m]}={r['size']})"
        if r["status"] != "run":
            rows.append((r["label"] + size, *["-"] * 4, *[NOT_RUN] * 4, "-"))
            continue
        rows.append(
            (
                r["label"] + size,
                f"{r['trainable_params']:,}",
                "-" if r["formula"] is None else f"{r['formula']:,}",
                f"{r['lr']:g}",
                str(r["n"]),
                *(_cell(r, k, f) for k, f in METRICS),
                "-" if r["name_kept"] is None else f"{r['name_kept']:.0f}",
            )
        )
    return _report.text_table(rows)


def figure2_text(f2: dict) -> str:
    """Figure 2's points as text, one line per method: size -> BLEU (mean ± sd, seeds)."""
    lines = []
    for fam in f2.values():
        pts = ", ".join(f"{p['size']}: {_mean(p)}" for p in fam["points"])
        lines.append(f"{fam['label']:9s} {fam['size_name']} -> BLEU  {pts}")
    return "\n".join(lines)


def report_folder(folder: str | Path, settings: dict, part: str = "all") -> dict:
    """:func:`report` of the records in ``folder`` (none yet: every run is *not run*)."""
    return report(_grid.load_runs(folder), settings, part)


def report(records: list[dict], settings: dict, part: str = "all") -> dict:
    """Everything the chapter shows from ``records`` (a folder's, or a live run's):
    ``{"records", "runs", "template", "table3", "figure2", "claims", "missing", "gpu_minutes",
    "stale", "imported"}``; ``missing`` lists the runs of the plan of ``settings`` without a
    record, ``imported`` the runs taken from chapter 6 (run id -> its record there)."""
    runs, template = split_records(records)
    t3, f2 = table3(runs, settings), figure2(runs, settings)
    return {
        "records": records,
        "runs": runs,
        "template": template,
        "table3": t3,
        "figure2": f2,
        "claims": claims(t3, f2),
        "missing": _grid.missing(plan(settings, part), records),
        "gpu_minutes": gpu_minutes(records),
        "stale": [r["name"] for r in records if not r["current"]],
        "imported": {r["name"]: imported_from(r) for r in records if imported_from(r)},
    }


def claim_rows(runs_dir: str | Path | None = None, preset: str = "gpu") -> list[dict]:
    """Chapter 7's claims judged from the ``preset`` grid's records under ``runs_dir`` (default
    ``data/runs``): for ``python -m lorakit.runs claims``, each row naming the grid's record
    files (``records``). No records: every claim "not run"."""
    from lorakit.runs import RUNS_DIR
    from lorakit.runs.check import record_files

    folder = Path(runs_dir if runs_dir is not None else RUNS_DIR) / f"{GRID}_{preset}"
    records = [str(p) for p in record_files(folder)]
    return [
        {**row, "records": records} for row in report_folder(folder, settings_for(preset))["claims"]
    ]


def main(argv: list[str] | None = None) -> None:
    preset, folder = _report.parse_report_args(argv, "baselines-report", __doc__, GRID, PRESETS)
    rep = report_folder(folder, settings_for(preset))
    _report.print_records(f"{len(rep['records'])} records", folder, rep)
    if rep["imported"]:
        print(f"runs of chapter 6 (not counted in the GPU minutes): {', '.join(rep['imported'])}")
    print("\nTable 3\n" + table3_text(rep["table3"], rep["template"]))
    print("\nFigure 2\n" + figure2_text(rep["figure2"]))
    print(f"\nClaims (rule: {RULE_TEXT})\n" + claims_text(rep["claims"]))
    print("\n" + _report.missing_text(rep["missing"]))
