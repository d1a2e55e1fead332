"""Chapter 8's tables and verdicts from whatever run records exist.

``python -m lorakit.experiments which-rank-report [--preset P] [--out DIR]`` reads the records
of :mod:`lorakit.experiments.which_rank` and prints Table 5 (one parameter budget), Table 6
(ranks), each row against the best row of its table, the paper's claims with a verdict each,
the runs of the plan with no record (*not run*) and the GPU minutes the records took.

A row is one (weight matrices, rank): mean ± sample standard deviation over its seeds
(:func:`lorakit.experiments._stats.seed_summary`) and the mean half-width of its runs' bootstrap
95% intervals over test MRs. A comparison uses :func:`lorakit.experiments._stats.verdict` with
the rule ``"max-noise"`` (:data:`RULE_TEXT`): with fewer than 2 seeds on a side it is
*undetermined*; a difference no larger than the noise is *within noise*.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from lorakit.experiments import _grid, _report
from lorakit.experiments._report import (  # noqa: F401  (re-exported for the chapters)
    NOT_RUN,
    RULE,
    RULE_TEXT,
    claims_text,
)
from lorakit.experiments._stats import verdict
from lorakit.experiments._which_rank_run import weights_label
from lorakit.experiments._which_rank_settings import (
    BUDGET_RANK,
    GRID,
    PRESETS,
    TABLE5,
    TABLE6_SETS,
    plan,
    settings_for,
)

KEYS = ("bleu", "rouge_l", "ser", "dev_loss")
PSEUDO = ("base_weights",)  # records of a grid folder that are not runs


# Chapter 8's exercise (the notebook holds the same code). It cannot see the noise of a
# configuration run once; the tables' verdicts use lorakit.experiments._stats.verdict instead,
# which says "undetermined" below 2 seeds and also weighs the bootstrap intervals over test MRs.
def clear_difference(a: list[float], b: list[float]) -> bool:
    """Whether the means of ``a`` and ``b`` differ by more than the sum of their sample standard
    deviations (a rule of thumb for "beyond seed noise"; a single value has std 0)."""
    if not a or not b:
        raise ValueError("clear_difference needs at least one value in each list (one per seed).")
    spread = sum(statistics.stdev(x) if len(x) > 1 else 0.0 for x in (a, b))
    return abs(statistics.fmean(a) - statistics.fmean(b)) > spread


def summarise(runs: list[dict], targets, r: int) -> dict:
    """One (targets, r) row over its seeds: per metric a seed summary (``"values"``, ``"mean"``,
    ``"sd"``...), the bootstrap intervals and their mean half-width; ``"status"`` is "run" or
    "not run"."""
    mine = sorted(
        (x for x in runs if tuple(x["targets"]) == tuple(targets) and x["r"] == r),
        key=lambda x: x["seed"],
    )
    out = {
        "targets": list(targets),
        "r": r,
        "seeds": [x["seed"] for x in mine],
        "status": "run" if mine else NOT_RUN,
        "trainable_params": mine[0]["trainable_params"] if mine else None,
    }
    for key in KEYS:
        vals = [x[key] if key == "dev_loss" else x.get("metrics", {}).get(key) for x in mine]
        vals = [v for v in vals if v is not None]
        cis = [x["bootstrap"][key] for x in mine if key in x.get("bootstrap", {})]
        out[key] = _report.metric_summary(vals, cis)
    return out


def tables(runs: list[dict], settings: dict) -> tuple[list[dict], list[dict]]:
    """``(table5, table6)``: rows of :func:`summarise` in the paper's order."""
    t5 = [summarise(runs, t, BUDGET_RANK // len(t)) for t in TABLE5]
    t6 = [summarise(runs, t, r) for t in TABLE6_SETS for r in settings["ranks"]]
    return t5, t6


def compare(a: dict, b: dict, key: str = "bleu"):
    """The verdict on ``key`` of row ``a`` against row ``b`` (rule :data:`RULE`)."""
    return verdict(
        a[key]["values"],
        b[key]["values"],
        a[key]["cis"],
        b[key]["cis"],
        rule=RULE,
        higher_is_better=key not in ("ser", "dev_loss"),
    )


def against_best(rows: list[dict], key: str = "bleu") -> list[tuple[dict, object]]:
    """Each run row against the row with the best mean: ``[(row, verdict of best vs row)]``."""
    done = [x for x in rows if x["status"] == "run" and x[key]["mean"] is not None]
    if not done:
        return []
    sign = -1 if key in ("ser", "dev_loss") else 1
    best = max(done, key=lambda x: sign * x[key]["mean"])
    return [(x, compare(best, x, key)) for x in done if x is not best]


def best_by_dev_loss(rows: list[dict]) -> dict | None:
    """The run row with the lowest mean dev loss (``None`` if no row has one): the best row a
    claim compares with is chosen by the dev split, never by the test set it is then scored on."""
    done = [x for x in rows if x["status"] == "run" and x["dev_loss"]["mean"] is not None]
    return min(done, key=lambda x: x["dev_loss"]["mean"]) if done else None


def _label(row: dict) -> str:
    return f"{weights_label(row['targets'])} r={row['r']}"


def _mean(row: dict, key: str = "bleu") -> str:
    return _report.seeds_text(row[key]) if row["status"] == "run" else NOT_RUN


def claims(t5: list[dict], t6: list[dict]) -> list[dict]:
    """The paper's §7.1 claims: ``{"chapter", "claim", "paper", "ours", "verdict", "why"}``;
    the verdict is "reproduced", "not reproduced", "undetermined" or "not run"."""
    rows = []

    def add(claim: str, paper: str, a: dict | None, b: dict | None, kind: str) -> None:
        if a is None or b is None or a["status"] != "run" or b["status"] != "run":
            rows.append(_report.claim_row(8, claim, paper))
            return
        ours = f"{_label(a)} {_mean(a)} vs {_label(b)} {_mean(b)} BLEU"
        rows.append(_report.judged_row(8, claim, paper, ours, compare(a, b), kind))

    qv = [x for x in t6 if x["targets"] == ["q", "v"]]
    low = min(qv, key=lambda x: x["r"]) if qv else None
    best = best_by_dev_loss(qv)
    add(
        "a very low rank suffices: {Wq,Wv} at r=1 matches the best rank",
        "r=1 73.4 vs the best, r=8 73.8 (r=64 73.5; WikiSQL, Table 6)",
        low,
        best,
        "matches",
    )
    top1 = best_by_dev_loss([x for x in t5 if len(x["targets"]) == 1])
    pick = {tuple(x["targets"]): x for x in t5}
    add(
        "{Wq,Wv} at r=4 beats {Wq} at r=8 (same budget)",
        "73.7 vs 70.4 (WikiSQL, Table 5)",
        pick[("q", "v")],
        pick[("q",)],
        "beats",
    )
    add(
        "{Wq,Wv} at r=4 matches or beats the best single matrix at r=8",
        "73.7 vs Wo 73.2 (WikiSQL, Table 5)",
        pick[("q", "v")],
        top1,
        "matches",
    )
    add(
        "all four at r=2 match or beat the best single matrix at r=8",
        "73.7 vs Wo 73.2 (WikiSQL); 91.7 vs 91.3 (MultiNLI)",
        pick[("q", "k", "v", "o")],
        top1,
        "matches",
    )
    return rows


def table_text(rows: list[dict], template: dict | None) -> str:
    """Table 5 or 6 as text: the template's row, then per row the weight set, r, trainable
    parameters, BLEU, ROUGE-L, SER (%) as mean ± seed sd [± mean bootstrap half-width], dev
    loss and the seeds; a row without a record reads "not run"."""
    head = ("weights", "r", "trainable", "BLEU", "ROUGE-L", "SER %", "dev loss", "seeds")

    def cell(x: dict, key: str, fmt: str) -> str:
        return _report.mean_cell(x[key], fmt) or NOT_RUN

    lines = [head]
    if template is not None:
        t = _report.template_metrics(template, KEYS[:3])
        lines.append(("template", "-", "0", *(cell(t, k, ".1f") for k in KEYS[:3]), "-", "-"))
    for x in rows:
        lines.append(
            (
                weights_label(x["targets"]),
                str(x["r"]),
                f"{x['trainable_params']:,}" if x["trainable_params"] else "-",
                *(cell(x, k, ".1f") for k in KEYS[:3]),
                cell(x, "dev_loss", ".3f"),
                str(len(x["seeds"])),
            )
        )
    return _report.text_table(lines)


def report(records: list[dict], settings: dict, template: dict | None = None) -> dict:
    """Everything chapter 8 shows from ``records`` (a folder's or a live run's): ``{"runs",
    "table5", "table6", "claims", "missing", "gpu_minutes", "stale", "template"}``."""
    runs = [r["results"] for r in records if r["name"] not in PSEUDO + ("template",)]
    template = template or next((r["results"] for r in records if r["name"] == "template"), None)
    t5, t6 = tables(runs, settings)
    return {
        "runs": runs,
        "table5": t5,
        "table6": t6,
        "claims": claims(t5, t6),
        "missing": _grid.missing(plan(settings), records),
        "template": template,
        "gpu_minutes": _grid.gpu_minutes(records),
        "stale": [r["name"] for r in records if not r["current"]],
    }


def report_folder(folder: str | Path, settings: dict) -> dict:
    """:func:`report` of the records in ``folder``."""
    return report(_grid.load_runs(folder), settings)


def claim_rows(runs_dir: str | Path | None = None, preset: str = "gpu") -> list[dict]:
    """Chapters 8 and 9's claims judged from the ``preset`` grid's records under ``runs_dir``
    (default ``data/runs``): for ``python -m lorakit.runs claims``, each row naming the grid's
    record files (``records``). No records: "not run"."""
    from lorakit.experiments import subspace_report
    from lorakit.runs import RUNS_DIR
    from lorakit.runs.check import record_files

    folder = Path(runs_dir if runs_dir is not None else RUNS_DIR) / f"{GRID}_{preset}"
    records = _grid.load_runs(folder)
    rows = report(records, settings_for(preset))["claims"]
    rows += subspace_report.report(records, folder)["claims"]
    files = [str(p) for p in record_files(folder)]
    return [{**row, "records": files} for row in rows]


def main(argv: list[str] | None = None) -> None:
    preset, folder = _report.parse_report_args(argv, "which-rank-report", __doc__, GRID, PRESETS)
    rep = report_folder(folder, settings_for(preset))
    _report.print_records(f"{len(rep['runs'])} run records", folder, rep)
    print("\nTable 5 (one budget)\n" + table_text(rep["table5"], rep["template"]))
    print("\nTable 6 (ranks)\n" + table_text(rep["table6"], rep["template"]))
    print(f"\nClaims (rule: {RULE_TEXT})\n" + claims_text(rep["claims"]))
    print("\n" + _report.missing_text(rep["missing"]))
