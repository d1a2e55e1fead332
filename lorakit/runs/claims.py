"""``python -m lorakit.runs claims``: the paper's claims beside our numbers, with a verdict each.

The table is built from whatever records exist in ``data/runs`` (or ``--dir``): nothing is
estimated or filled in. Each chapter's report module *judges* its claims from its records; this
module only gathers the rows. A judge is a function ``claim_rows(runs_dir=None) -> list[dict]``
in the module named by :data:`JUDGES`, returning one dict per claim with the keys

``chapter`` (int), ``claim``, ``paper`` (the paper's number), ``ours`` (our number, or
``"not run"``), ``verdict`` and ``why`` (how the verdict follows from the records, with its rule),
and optionally ``records``: the record files the row's numbers come from. A row whose records
include a stale one (:mod:`lorakit.runs.check`: code the run loaded, or a data file it read, has
changed since) keeps its numbers and verdict, and says so in ``ours`` and ``why``: the numbers
are what that code measured, and the record has to be made again before they speak for this code.

Verdicts: ``reproduced``, ``partly``, ``not`` (``"not reproduced"`` is read as ``not``),
``undetermined`` (too few seeds, or a difference within the noise where a difference is claimed)
and ``not run`` (no record). Where a judge is not written yet, the paper's claims of that part
(:data:`PENDING`) are listed as ``not run``, saying so.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from lorakit.runs import RUNS_DIR

VERDICTS = ("reproduced", "partly", "not", "undetermined", "not run")
COLUMNS = ("chapter", "claim", "paper", "ours", "verdict", "why")
BRIEF_COLUMNS = COLUMNS[:-1]

#: where each part's judge lives: (chapter, "module:function")
JUDGES = (
    (6, "lorakit.experiments.finetune_report:claim_rows"),
    (7, "lorakit.experiments.baselines_report:claim_rows"),
    (7, "lorakit.bench.latency:claim_rows"),
    (8, "lorakit.experiments.which_rank:claim_rows"),
)

#: the paper's claims of each judge, listed as "not run" while the judge does not exist
PENDING = {
    "lorakit.experiments.baselines_report:claim_rows": [
        (
            7,
            "LoRA matches or beats the other adaptation methods on E2E (Table 3)",
            "GPT-2 M BLEU: LoRA 70.4 ± 0.1; PreLayer 69.7, AdapterL (11M) 68.9, FT-Top2 68.1, "
            "AdapterH 67.3, AdapterL (0.37M) 66.3",
        ),
        (
            7,
            "Prefix-based methods degrade with many special tokens (Figure 2)",
            "GPT-3: PreEmbed drops past 256 tokens, PreLayer past 32",
        ),
    ],
    "lorakit.bench.latency:claim_rows": [
        (
            7,
            "Adapter layers add inference latency, most at small batch; merged LoRA adds none "
            "(Table 1)",
            "GPT-2 M, batch 1 x 128: AdapterL +20.7%, AdapterH +30.3%; batch 32 x 512: +2.2%, "
            "+3.0%",
        ),
    ],
    "lorakit.experiments.which_rank:claim_rows": [
        (
            8,
            "At a fixed budget, adapting Wq and Wv (r = 4) beats one weight type at r = 8 "
            "(Table 5)",
            "GPT-3 WikiSQL: {Wq, Wv} 73.7 vs Wq 70.4, Wk 70.0, Wv 73.0, Wo 73.2",
        ),
        (
            8,
            "A very small rank suffices: r = 1 on {Wq, Wv} is close to the best r (Table 6)",
            "GPT-3 WikiSQL {Wq, Wv}: r = 1 73.4, 2 73.3, 4 73.7, 8 73.8, 64 73.5",
        ),
        (
            9,
            "The top singular direction of A at r = 8 and at r = 64 is shared (Figure 3)",
            "phi(A_8, A_64, i = 1, j = 1) > 0.5 (GPT-3, layer 48)",
        ),
        (
            9,
            "Delta W amplifies directions that W does not emphasise (Table 7)",
            "r = 4, Delta Wq: 6.91 / 0.32 = 21.5x; random directions 0.02",
        ),
    ],
}


def _judge(spec: str):
    module, name = spec.split(":")
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def _normal(row: dict) -> dict:
    verdict = str(row.get("verdict", "not run")).strip().lower()
    verdict = {"not reproduced": "not", "partly reproduced": "partly"}.get(verdict, verdict)
    if verdict not in VERDICTS:
        raise ValueError(
            f"claim {row.get('claim')!r} has verdict {verdict!r}; a verdict is one "
            f"of {', '.join(VERDICTS)}."
        )
    return {
        **{k: str(row.get(k, "-")) for k in COLUMNS},
        "chapter": int(row["chapter"]),
        "verdict": verdict,
    }


STALE = " (stale record)"


def _mark_stale(row: dict, records, current: str) -> dict:
    """``row`` with :data:`STALE` on ``ours`` and the reason in ``why`` when a record is stale."""
    from lorakit.runs.check import check_record

    stale = []
    for path in records or ():
        found = check_record(path, current)
        if found is not None and found.stale:
            stale.append(f"{Path(path).parent.name}/{Path(path).name}: {found.stale[0]}")
    if not stale:
        return row
    plural = "s" if len(stale) > 1 else ""
    return {
        **row,
        "ours": row["ours"] + STALE,
        "why": f"{row['why'].rstrip('. ')}. Stale record{plural} (`python -m lorakit.runs "
        f"check`): {'; '.join(stale)}.",
    }


def claims_table(runs_dir: str | Path | None = None) -> list[dict]:
    """Every claim's row (keys :data:`COLUMNS`), by chapter, from the records in ``runs_dir``;
    a row built on a stale record says so (see the module's docstring)."""
    from lorakit.runs import source_sha256

    runs_dir = Path(runs_dir) if runs_dir is not None else RUNS_DIR
    current = source_sha256()
    rows = []
    for _, spec in JUDGES:
        fn = _judge(spec)
        if fn is None:
            rows += [
                {
                    "chapter": ch,
                    "claim": claim,
                    "paper": paper,
                    "ours": "not run",
                    "verdict": "not run",
                    "why": f"not judged yet ({spec.replace(':', '.')} is not written)",
                }
                for ch, claim, paper in PENDING.get(spec, [])
            ]
        else:
            rows += [_mark_stale(_normal(r), r.get("records"), current) for r in fn(runs_dir)]
    return sorted(rows, key=lambda r: r["chapter"])


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def format_markdown(rows: list[dict], columns: tuple[str, ...] = COLUMNS) -> str:
    """The table as GitHub Markdown (for the README and chapter 9); ``columns``: which of
    :data:`COLUMNS`, e.g. :data:`BRIEF_COLUMNS` (the README's, without the long "why")."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_escape(str(r[k])) for k in columns) + " |" for r in rows]
    return "\n".join(lines)


def format_text(rows: list[dict]) -> str:
    """The table as plain text: one block per claim."""
    out = []
    for r in rows:
        out.append(
            f"[ch{r['chapter']}] {r['claim']}: {r['verdict'].upper()}\n"
            f"    paper: {r['paper']}\n    ours:  {r['ours']}\n    why:   {r['why']}"
        )
    counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
    out.append(", ".join(f"{n} {v}" for v, n in counts.items()) + f" (of {len(rows)} claims)")
    return "\n".join(out)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "claims",
        help="the paper's claims beside our numbers, with verdicts",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("dir", nargs="?", default=str(RUNS_DIR), help="the records (default data/runs)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument(
        "--brief",
        action="store_true",
        help="with --markdown: leave out the 'why' column (the README's table)",
    )


def run(args: argparse.Namespace) -> int:
    rows = claims_table(args.dir)
    columns = BRIEF_COLUMNS if args.brief else COLUMNS
    print(format_markdown(rows, columns) if args.markdown else format_text(rows))
    return 0
