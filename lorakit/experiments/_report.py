"""What the reports of chapters 7-9 share: the verdict rule, claim rows, text tables, the command.

Each report (:mod:`lorakit.experiments.baselines_report`, ``which_rank_report`` and
``subspace_report``) reads a grid's records and judges the paper's claims.
A claim row is ``{"chapter", "claim", "paper", "ours", "verdict", "why"}`` (the columns of
``python -m lorakit.runs claims``); a comparison of two configurations uses
:func:`lorakit.experiments._stats.verdict` with the rule :data:`RULE`, and a side without a record
makes the claim *not run* (never estimated or filled in).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from pathlib import Path

from lorakit.experiments import _grid
from lorakit.experiments._stats import RULES, Verdict, seed_summary
from lorakit.presets import get_preset

RULE = "max-noise"
RULE_TEXT = RULES[RULE]
NOT_RUN = "not run"
NO_RECORD = "a side of the comparison has no record"


def claim_row(
    chapter: int,
    claim: str,
    paper: str,
    ours: str = NOT_RUN,
    verdict: str = NOT_RUN,
    why: str = NO_RECORD,
) -> dict:
    """One row of the claims table; by default the row of a claim with a side not run."""
    return {
        "chapter": chapter,
        "claim": claim,
        "paper": paper,
        "ours": ours,
        "verdict": verdict,
        "why": why,
    }


def judged_row(chapter: int, claim: str, paper: str, ours: str, v: Verdict, kind: str) -> dict:
    """The claim row of a comparison of a with b judged by ``v``: the verdict by
    :func:`claim_verdict` (``kind`` "beats" or "matches"), the outcome and its reason as why."""
    return claim_row(chapter, claim, paper, ours, claim_verdict(v, kind), f"{v.outcome}: {v.why}")


def claim_verdict(v: Verdict, kind: str) -> str:
    """A claim's verdict from a :class:`lorakit.experiments._stats.Verdict` of a vs b.

    ``kind="beats"`` (a > b claimed): "a better" reproduces it, "b better" does not, a
    difference within the noise leaves it undetermined. ``kind="matches"`` (a >= b claimed):
    "a better" or "within noise" reproduces it. Fewer than 2 seeds: undetermined.
    """
    if v.outcome == "undetermined":
        return "undetermined"
    if v.outcome == "a better" or (kind == "matches" and v.outcome == "within noise"):
        return "reproduced"
    return "undetermined" if v.outcome == "within noise" else "not reproduced"


def claims_text(rows: Sequence[dict]) -> str:
    """One block per claim: the verdict, the claim, ours, the paper's, and why."""
    return "\n".join(
        f"{x['verdict']:15s} {x['claim']}\n    ours:  {x['ours']}\n"
        f"    paper: {x['paper']}\n    why:   {x['why']}"
        for x in rows
    )


def half_width(ci: dict) -> float:
    """Half the width of an interval ``{"lo", "hi", ...}``."""
    return (ci["hi"] - ci["lo"]) / 2


def metric_summary(values: Sequence[float], cis: Sequence[dict]) -> dict:
    """One metric of a configuration over its seeds: the seed summary of ``values``
    (:func:`lorakit.experiments._stats.seed_summary`; ``n`` 0 and no mean without values), the
    runs' bootstrap intervals ``cis`` and their mean half-width (``None`` without intervals)."""
    summary = (
        seed_summary(values).to_dict()
        if values
        else {"n": 0, "mean": None, "sd": None, "values": []}
    )
    hw = statistics.fmean(half_width(c) for c in cis) if cis else None
    return {**summary, "cis": list(cis), "ci_half_width": hw}


def seeds_text(s: dict) -> str:
    """A seed summary (:meth:`lorakit.experiments._stats.SeedSummary.to_dict`) as
    ``"mean ± sd (n seeds)"`` to one decimal; "not run" without a mean."""
    if s.get("mean") is None:
        return NOT_RUN
    sd = "" if s["sd"] is None else f" ± {s['sd']:.1f}"
    return f"{s['mean']:.1f}{sd} ({s['n']} seed{'s' if s['n'] != 1 else ''})"


def mean_cell(s: dict, fmt: str, interval: bool = True) -> str | None:
    """A table cell ``mean ± sd [±h]`` (``h``: the mean bootstrap half-width, left out when
    ``interval`` is false or unknown), each number formatted with ``fmt``; ``None`` without a
    mean."""
    if s.get("mean") is None:
        return None
    text = format(s["mean"], fmt) + ("" if s["sd"] is None else " ± " + format(s["sd"], fmt))
    hw = s.get("ci_half_width")
    return text + ("" if hw is None or not interval else f" [±{hw:{fmt}}]")


def template_metrics(template: dict, keys: Sequence[str]) -> dict[str, dict]:
    """The template's scores (one value each, no seeds) shaped like seed summaries, for
    :func:`mean_cell`: ``{key: {"mean", "sd": None, "ci_half_width"}}``."""
    cis = template.get("bootstrap", {})
    return {
        k: {
            "mean": template["metrics"][k],
            "sd": None,
            "ci_half_width": half_width(cis[k]) if k in cis else None,
        }
        for k in keys
    }


def text_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows of cells as aligned text: the first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        for row in rows
    )


def parse_report_args(
    argv: list[str] | None,
    command: str,
    doc: str,
    grid: str,
    presets: Sequence[str],
    records: str = "records' folder",
) -> tuple[str, Path]:
    """Parse a report's command line (``--preset P``, ``--out DIR``): ``(preset, folder)``, the
    folder of the records being ``--out``, else ``data/runs/<grid>_<preset>``.

    ``command`` is the name after ``python -m lorakit.experiments``; ``doc`` the module's
    docstring (its first paragraph describes the command); ``records`` says what ``--out`` holds.
    """
    parser = argparse.ArgumentParser(
        prog=f"python -m lorakit.experiments {command}", description=doc.split("\n\n")[0]
    )
    parser.add_argument("--preset", choices=sorted(presets), default=None)
    parser.add_argument(
        "--out", default=None, help=f"{records} (default data/runs/{grid}_<preset>)"
    )
    args = parser.parse_args(argv)
    preset = args.preset or get_preset()
    return preset, _grid.grid_dir(grid, preset, args.out)


def print_records(what: str, folder: Path, rep: dict) -> None:
    """The report's first lines: ``what`` (e.g. "12 records") in ``folder``, the GPU minutes,
    and the records made by other code (``rep["stale"]``)."""
    print(f"{what} in {folder}; {rep['gpu_minutes']:.1f} GPU minutes")
    if rep["stale"]:
        print(f"made by other code than this tree's: {', '.join(rep['stale'])}")


def missing_text(left: Sequence[dict]) -> str:
    """The runs of the plan that have no record, by id."""
    return f"{len(left)} runs of the plan not run" + (
        ": " + ", ".join(s["id"] for s in left) if left else ""
    )
