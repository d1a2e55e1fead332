"""Chapter 6's table and verdict from whatever run records exist.

``python -m lorakit.experiments finetune-report [--preset P | --dir DIR] [--seeds ...]
[--lora-lrs ...] [--full-lrs ...]`` reads the records of ``python -m lorakit.experiments
finetune`` (default ``data/runs/ch06_finetune_<preset>/``) and prints:

* per configuration (method, learning rate): the seeds' mean ± sample standard deviation of BLEU,
  ROUGE-L, NIST, SER and the final dev loss, and under it each run's value with its bootstrap
  95% interval over the test MRs; the template row first;
* the verdict on the paper's claim "LoRA matches full fine-tuning with ~0.15% of the parameters",
  by :data:`CLAIM_RULE`;
* the runs of the plan (the grid's arguments; the ``gpu`` preset's default is chapter 6's grid)
  that have no record: *not run*, never estimated; and records made by other ``lorakit/``
  source than the tree here (*stale*: still shown, marked).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from lorakit.experiments._stats import RULES, seed_summary, verdict
from lorakit.runs import RUNS_DIR, source_changes, source_sha256
from lorakit.runs.check import record_files

METRICS = (
    ("bleu", "BLEU", ".1f"),
    ("rouge_l", "ROUGE-L", ".1f"),
    ("nist", "NIST", ".2f"),
    ("ser", "SER %", ".1f"),
)
RULE = "max-noise"
CLAIM = "LoRA matches full fine-tuning with ~0.15% of the parameters"
CLAIM_RULE = (
    "Each method's learning rate is the one with the lowest mean dev loss over its seeds among "
    "those run with 2 or more seeds (any, when none has 2; the test set never chooses). On BLEU, "
    "the verdict rule max-noise (" + RULES[RULE] + ") compares LoRA "
    "with full fine-tuning: LoRA better or within noise: reproduced; full fine-tuning better by at "
    "most twice the noise: partly; by more: not; fewer than 2 seeds a side: undetermined."
)


def load_grid(folder: str | Path) -> list[dict]:
    """The run records in ``folder`` (sorted by name), each with ``"current"`` added: whether
    it was made from the ``lorakit/`` source here. A missing folder gives ``[]``."""
    folder = Path(folder)
    here, out = source_sha256(), []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        rec = json.loads(path.read_text())
        if isinstance(rec, dict) and "methods" in rec.get("results", {}):
            out.append({**rec, "current": not source_changes(rec, whole=here)})
    return out


def configurations(records: list[dict]) -> dict[tuple[str, float], dict]:
    """``{(method, lr): summary}``; a summary holds the runs (one per seed, sorted), ``seeds``,
    per metric a :class:`~lorakit.experiments._stats.SeedSummary` (``metrics``) and the runs'
    bootstrap intervals (``cis``), the dev loss summary and the parameter counts."""
    runs = defaultdict(list)
    for rec in records:
        for method, run in rec["results"]["methods"].items():
            runs[(method, float(run["lr"]))].append({**run, "current": rec["current"]})
    out = {}
    for key, group in sorted(runs.items(), key=lambda kv: (_order(kv[0][0]), kv[0][1])):
        group.sort(key=lambda r: r["seed"])
        metrics = {
            m: seed_summary([r["metrics"][m] for r in group])
            for m, _, _ in METRICS
            if all(r["metrics"].get(m) is not None for r in group)
        }
        cis = {
            m: [r["bootstrap"][m] for r in group if m in r.get("bootstrap", {})]
            for m, _, _ in METRICS
        }
        losses = [r["dev_loss"] for r in group if r.get("dev_loss") is not None]
        out[key] = {
            "runs": group,
            "seeds": [r["seed"] for r in group],
            "metrics": metrics,
            "cis": cis,
            "dev_loss": seed_summary(losses) if losses else None,
            "trainable": group[0]["trainable_params"],
            "total": group[0]["total_params"],
            "stale": sum(not r["current"] for r in group),
        }
    return out


def _order(method: str) -> int:
    return ("lora", "full").index(method) if method in ("lora", "full") else 2


def choose(configs: dict, method: str) -> tuple[str, float] | None:
    """The ``method``'s configuration with the lowest mean dev loss (``None`` if it has none).

    Only configurations with 2 or more seeds compete when the method has any: a verdict needs a
    spread over seeds, so a one-seed learning rate that happens to score a lower dev loss would
    turn every verdict into "undetermined". The test set never takes part in the choice.
    """
    keys = [k for k in configs if k[0] == method and configs[k]["dev_loss"] is not None]
    spread = [k for k in keys if len(configs[k]["seeds"]) >= 2]
    return min(spread or keys, key=lambda k: (configs[k]["dev_loss"].mean, k[1]), default=None)


def claim_verdict(configs: dict) -> dict:
    """The verdict on :data:`CLAIM` by :data:`CLAIM_RULE`: ``{"verdict", "why", "ours", ...}``;
    ``"not run"`` when a method has no record."""
    lora, full = choose(configs, "lora"), choose(configs, "full")
    if lora is None or full is None:
        missing = " and ".join(m for m, k in (("LoRA", lora), ("full fine-tuning", full)) if not k)
        return {"verdict": "not run", "ours": "-", "why": f"no record of {missing}"}
    a, b = configs[lora], configs[full]
    v = verdict(
        a["metrics"]["bleu"].values,
        b["metrics"]["bleu"].values,
        a["cis"]["bleu"],
        b["cis"]["bleu"],
        rule=RULE,
    )
    ser = (
        verdict(
            a["metrics"]["ser"].values,
            b["metrics"]["ser"].values,
            a["cis"]["ser"],
            b["cis"]["ser"],
            rule=RULE,
            higher_is_better=False,
        )
        if "ser" in a["metrics"] and "ser" in b["metrics"]
        else None
    )
    if v.outcome == "undetermined":
        claim = "undetermined"
    elif v.outcome in ("a better", "within noise"):
        claim = "reproduced"
    else:
        claim = "partly" if -v.diff <= 2 * v.noise else "not"
    share = 100 * a["trainable"] / a["total"]
    ours = (
        f"BLEU LoRA {a['metrics']['bleu']} (lr {lora[1]:g}) vs full {b['metrics']['bleu']} "
        f"(lr {full[1]:g}); LoRA trains {share:.3f}%"
    )

    def named(outcome: str) -> str:  # the rule's "a"/"b" are LoRA and full fine-tuning here
        return outcome.replace("a better", "LoRA better").replace("b better", "full better")

    why = (
        f"BLEU: {named(v.outcome)} ({v.why})"
        + (f"; SER: {named(ser.outcome)} ({ser.why})" if ser else "")
        + (f"; {a['stale'] + b['stale']} of the runs are stale" if a["stale"] + b["stale"] else "")
    )
    return {
        "verdict": claim,
        "ours": ours,
        "why": why,
        "lora": lora,
        "full": full,
        "bleu": v.to_dict(),
        "ser": ser.to_dict() if ser else None,
        "trainable_pct": share,
    }


def mean_sd(summary, fmt: str) -> str:
    """``"mean ± sd"`` of a seed summary (``"-"`` for None; no ``±`` with one seed)."""
    if summary is None:
        return "-"
    return format(summary.mean, fmt) + ("" if summary.sd is None else f" ± {summary.sd:{fmt}}")


def _run_cell(run: dict, metric: str, fmt: str) -> str:
    value, ci = run["metrics"].get(metric), run.get("bootstrap", {}).get(metric)
    if value is None:
        return "-"
    return format(value, fmt) + ("" if ci is None else f" [{ci['lo']:{fmt}}, {ci['hi']:{fmt}}]")


def format_table(records: list[dict], configs: dict) -> str:
    """The table: the template row, then per configuration its seed summary and its runs."""
    head = ["configuration", "seeds", *(label for _, label, _ in METRICS), "dev loss", "trainable"]
    rows = [head]
    tmpl = next((r["results"]["template"] for r in records if "template" in r["results"]), None)
    if tmpl is not None:
        rows.append(["template", "-", *(_run_cell(tmpl, m, f) for m, _, f in METRICS), "-", "0"])
    for (method, lr), c in configs.items():
        rows.append(
            [
                f"{method} lr {lr:g}",
                str(len(c["seeds"])),
                *(mean_sd(c["metrics"].get(m), f) for m, _, f in METRICS),
                mean_sd(c["dev_loss"], ".3f"),
                f"{c['trainable']:,} ({100 * c['trainable'] / c['total']:.3f}%)",
            ]
        )
        for run in c["runs"]:
            rows.append(
                [
                    f"  seed {run['seed']}" + ("" if run["current"] else " (stale)"),
                    "",
                    *(_run_cell(run, m, f) for m, _, f in METRICS),
                    "-" if run.get("dev_loss") is None else f"{run['dev_loss']:.3f}",
                    "",
                ]
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in rows
    )


def base_builds(records: list[dict]) -> str:
    """One line on which builds of the base the records started from (their base block's
    ``weights_sha256``): one build, several (pooled runs whose spread includes the builds'), or
    not recorded (records from before they carried it)."""
    shas = [(r["results"].get("base") or {}).get("weights_sha256") for r in records]
    known = sorted({s for s in shas if s})
    unknown = shas.count(None)
    if not known:
        return "base build: not recorded (records from before they carried the weights' SHA-256)"
    if len(known) == 1 and not unknown:
        return f"base build: one for every run (weights SHA-256 {known[0][:12]})"
    without = f", and {unknown} runs that do not say" if unknown else ""
    return (
        f"base builds: {len(known)} different{without}. Runs from different builds are pooled "
        "here, so the seed spread includes the builds' (make the grid again from one base)"
    )


def missing_runs(records: list[dict], seeds, lrs: dict) -> list[str]:
    """The runs of the plan (seeds x learning rates per method) that have no record."""
    have = {
        (m, float(run["lr"]), run["seed"])
        for rec in records
        for m, run in rec["results"]["methods"].items()
    }
    return [
        f"{m} lr {lr:g} seed {s}"
        for s in seeds
        for m, rates in lrs.items()
        for lr in rates
        if (m, float(lr), s) not in have
    ]


def _shown(folder: Path) -> str:
    """``data/runs/...`` for a folder of the repository's records, else the path as given."""
    try:
        return folder.resolve().relative_to(RUNS_DIR.parent.parent).as_posix()
    except ValueError:
        return str(folder)


def report(folder: str | Path, seeds=None, lrs: dict | None = None) -> str:
    """The whole report on the records in ``folder`` as text (see the module's docstring)."""
    folder = Path(folder)
    records = load_grid(folder)
    if not records:
        return f"no records in {_shown(folder)} yet: every run of the grid is not run"
    configs = configurations(records)
    first = records[0]
    res = first["results"]
    lines = [
        f"RECORDED {folder.name}: {len(records)} runs, {first['device']}, "
        f"data {res['data']['source']} ({res['data']['test_mrs']} test MRs, bootstrap "
        f"95% intervals over them), base {res['base']['name']} "
        f"({res['base']['n_params'] / 1e6:.1f}M), epochs {res['settings']['epochs']}, "
        f"batch {res['settings']['batch_size']}, beam {res['settings']['beams']}",
        "",
        format_table(records, configs),
        "",
        base_builds(records),
        "",
    ]
    cv = claim_verdict(configs)
    lines += [
        f'claim "{CLAIM}": {cv["verdict"].upper()}',
        f"  ours: {cv['ours']}",
        f"  why: {cv['why']}",
        f"  rule: {CLAIM_RULE}",
    ]
    if lrs:
        gone = missing_runs(records, seeds or [0], lrs)
        lines.append(
            f"not run ({len(gone)}): {', '.join(gone)}"
            if gone
            else "not run: none (every run of the plan has a record)"
        )
    stale = [r["name"] for r in records if not r["current"]]
    if stale:
        lines.append(f"stale ({len(stale)}, made from another lorakit/ source): {', '.join(stale)}")
    minutes = sum(r["wall_s"] for r in records) / 60
    lines.append(f"device minutes in these records: {minutes:.1f}")
    return "\n".join(lines)


PAPER = (
    "GPT-2 M on E2E: LoRA 70.4 ± 0.1 BLEU training 0.35M weights vs full fine-tuning 68.2 "
    "training 354.92M"
)
#: the grids the claims table reads: (folder under data/runs, what the row says it is)
CLAIM_GRIDS = (
    ("ch06_finetune_gpu", "offline base, synthetic E2E-style set"),
    ("ch06_finetune_gpu_gpt2-medium_real", "GPT-2 medium on the real E2E"),
)


def claim_rows(runs_dir: str | Path | None = None) -> list[dict]:
    """Chapter 6's rows of the claims table (:mod:`lorakit.runs.claims`): the ``gpu`` grid on the
    course's base and data, and the paper's setting (``--base gpt2-medium --data real``); each
    row names its grid's record files (``records``)."""
    rows = []
    for name, what in CLAIM_GRIDS:
        folder = Path(runs_dir or RUNS_DIR) / name
        cv = claim_verdict(configurations(load_grid(folder)))
        why = cv["why"] if cv["verdict"] == "not run" else f"{cv['why']}. Rule: {CLAIM_RULE}"
        rows.append(
            {
                "chapter": 6,
                "claim": f"{CLAIM} ({what})",
                "paper": PAPER,
                "ours": cv["ours"] if cv["verdict"] != "not run" else "not run",
                "verdict": cv["verdict"],
                "why": why,
                "records": [str(p) for p in record_files(folder)],
            }
        )
    return rows


def records_preset(folder: Path | str) -> str | None:
    """The preset that made every record in ``folder``, or ``None`` if there are none or they
    disagree (a folder of ``--preset gpu`` records has the gpu preset's plan)."""
    presets = set()
    for path in record_files(Path(folder)):
        try:
            presets.add(json.loads(path.read_text()).get("preset"))
        except (OSError, ValueError):
            return None
    return presets.pop() if len(presets) == 1 and None not in presets else None


def main(argv: list[str] | None = None) -> None:
    from lorakit.cli import nonnegative_int, positive_float
    from lorakit.experiments.finetune import GRID, PRESETS
    from lorakit.presets import get_preset

    parser = argparse.ArgumentParser(
        prog="python -m lorakit.experiments finetune-report", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="whose plan lists what was not run (default: the preset of the records in --dir, "
        "else LORAKIT_PRESET)",
    )
    parser.add_argument(
        "--dir", default=None, help="the records' folder (default data/runs/ch06_finetune_<preset>)"
    )
    parser.add_argument("--seeds", nargs="+", type=nonnegative_int, default=None)
    parser.add_argument("--lora-lrs", nargs="+", type=positive_float, default=None)
    parser.add_argument("--full-lrs", nargs="+", type=positive_float, default=None)
    args = parser.parse_args(argv)
    # a folder's own records say which preset's plan they belong to; otherwise the environment's
    preset = args.preset or (args.dir and records_preset(args.dir)) or get_preset()
    grid = (
        GRID
        if preset == "gpu"
        else {"seeds": (0,), "lr": {m: (lr,) for m, lr in PRESETS[preset]["lr"].items()}}
    )
    lrs = {"lora": args.lora_lrs or grid["lr"]["lora"], "full": args.full_lrs or grid["lr"]["full"]}
    folder = args.dir or RUNS_DIR / f"ch06_finetune_{preset}"
    print(report(folder, args.seeds or grid["seeds"], lrs))
