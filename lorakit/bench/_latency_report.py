"""Table 1's numbers and claims from a latency record (:mod:`lorakit.bench.latency`).

A cell of the record: per mode (``"eager"``, ``"graph"``) the median, quartiles, mean and sample
standard deviation of the per-pass times (ms) and ``ratio`` = its median / the base's median.

Claims follow one stated rule (:data:`RULE_TEXT`): the *noise* of a ratio is the larger relative
half-interquartile range, ``(q3 - q1) / 2 / median``, of the method's and the base's times, or,
when larger, how far the A/A control (``base_again``: the base timed a second time, as one more
method) lies from 1; a ratio is *above 1* when ``ratio - 1`` exceeds that noise, *at 1* when
``|ratio - 1|`` does not.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

RULE_TEXT = (
    "a ratio of medians differs from 1 when |ratio - 1| exceeds the noise: the larger relative "
    "half-IQR ((q3 - q1) / 2 / median) of the two cells' per-pass times, or the A/A control's "
    "|ratio - 1| (the base timed twice) when larger"
)
PAPER = {
    "adapter_l": "+20.7% at 1x128, +2.2% at 32x512 (AdapterL, GPT-2 M, Table 1)",
    "adapter_h": "+30.3% at 1x128, +3.0% at 32x512 (AdapterH, GPT-2 M, Table 1)",
}


def summary(ms: list[float]) -> dict:
    """Median, quartiles, interquartile range, mean, sample std and count of per-pass times."""
    q1, med, q3 = statistics.quantiles(ms, n=4, method="inclusive") if len(ms) > 1 else (ms[0],) * 3
    return {
        "median_ms": med,
        "q1_ms": q1,
        "q3_ms": q3,
        "iqr_ms": q3 - q1,
        "mean_ms": statistics.fmean(ms),
        "std_ms": statistics.stdev(ms) if len(ms) > 1 else 0.0,
        "n": len(ms),
    }


def noise(cell: dict, base: dict, control: dict | None = None) -> float:
    """The relative noise of a ratio: the larger relative half-IQR of the two cells, or the A/A
    ``control``'s distance from 1 (the base timed again as its own method) when that is larger."""
    spread = max(c["iqr_ms"] / 2 / c["median_ms"] for c in (cell, base))
    return max(spread, abs(control["ratio"] - 1)) if control else spread


NOT_RECORDED = (
    "not in data/runs/bench/ in its current form (medians, eager and CUDA graphs): "
    "`python -m lorakit.bench latency` on a GPU writes it"
)


def is_current(results: dict) -> bool:
    """Whether a latency record's ``results`` are in today's form: per shape and method, an
    ``"eager"`` (and usually a ``"graph"``) summary of medians. Records from before the medians
    held one mean per method and shape, eager only."""
    cells = results.get("cells") if isinstance(results, dict) else None
    if not cells:
        return False
    one = next(iter(next(iter(cells.values())).values()), None)  # the first shape's first method
    return isinstance(one, dict) and "eager" in one


def recorded_ratios(record: dict | None) -> dict[str, dict[str, dict[str, float]]] | None:
    """``{method: {mode: {"BxT": ratio}}}`` from a latency record (as
    :func:`lorakit.runs.load_record` returns it): each method's median forward time over the
    base's, per mode (``"eager"``, ``"graph"``) and shape, in the record's order.

    ``None`` when there is no record or it is not :func:`is_current` (print
    :data:`NOT_RECORDED` then).
    """
    if record is None or not is_current(record.get("results")):
        return None
    res = record["results"]
    cells = res["cells"]
    methods = next(iter(cells.values()))
    return {
        m: {
            mode: {c: cells[c][m][mode]["ratio"] for c in cells}
            for mode in res.get("modes", ["eager"])
        }
        for m in methods
    }


def format_table(results: dict) -> str:
    """The record as text: per mode, one row per method, the median ms [IQR] and the ratio to
    the base at each shape. A record from before the medians (means, eager only) is said so."""
    cols = list(results["cells"])
    first = next(iter(results["cells"].values()))
    if not is_current(results):
        return (
            "(a record from before medians and CUDA graphs: means of eager passes; "
            "re-run `python -m lorakit.bench latency`)"
        )
    lines = []
    for mode in results.get("modes", ["eager"]):
        lines.append(f"{mode}: median ms [IQR] (ratio to base)")
        lines.append(f"{'method':<15}" + "".join(f"{'B x T = ' + c:>30}" for c in cols))
        for m in first:
            row = f"{m:<15}"
            for c in cols:
                x = results["cells"][c][m][mode]
                row += f"{x['median_ms']:>11.2f} [{x['iqr_ms']:5.2f}] ({x['ratio']:.3f}x)"
            lines.append(row)
    return "\n".join(lines)


def claims(results: dict) -> list[dict]:
    """Table 1's claims judged on a record: adapters add latency at 1x128 and less at the largest
    shape; merged LoRA adds none; per mode. Rows as :mod:`lorakit.runs.claims` expects."""
    cells = results["cells"]
    shapes = list(cells)
    first, last = shapes[0], shapes[-1]
    rows = []
    for mode in results.get("modes", ["eager"]):
        tag = "eager" if mode == "eager" else "CUDA graphs"

        def noise_at(shape: str, method: str, mode: str = mode) -> float:
            row = cells[shape]
            control = row["base_again"][mode] if "base_again" in row else None
            return noise(row[method][mode], row["base"][mode], control)

        for m in ("adapter_l", "adapter_h"):
            if m not in cells[first]:
                continue
            a, z = cells[first][m][mode], cells[last][m][mode]
            slower = a["ratio"] - 1 > noise_at(first, m)
            shrinks = (a["ratio"] - 1) > (z["ratio"] - 1) + max(
                noise_at(first, m), noise_at(last, m)
            )
            verdict = (
                "reproduced" if slower and shrinks else "partly" if slower else "not reproduced"
            )
            rows.append(
                {
                    "chapter": 7,
                    "claim": f"{m} adds latency at batch 1, less at large batches ({tag})",
                    "paper": PAPER[m],
                    "ours": f"{first} {100 * (a['ratio'] - 1):+.1f}%, {last} "
                    f"{100 * (z['ratio'] - 1):+.1f}% (medians of {a['n']} passes)",
                    "verdict": verdict,
                    "why": f"noise at {first} ±{100 * noise_at(first, m):.1f}%; {RULE_TEXT}",
                }
            )
        if "lora_merged" in cells[first]:
            devs = [(c, cells[c]["lora_merged"][mode], noise_at(c, "lora_merged")) for c in shapes]
            level = all(abs(x["ratio"] - 1) <= e for _, x, e in devs)
            rows.append(
                {
                    "chapter": 7,
                    "claim": f"merged LoRA adds no latency ({tag})",
                    "paper": "no additional inference latency (§4.1)",
                    "ours": ", ".join(f"{c} {x['ratio']:.3f}x ±{e:.3f}" for c, x, e in devs),
                    "verdict": "reproduced" if level else "not reproduced",
                    "why": RULE_TEXT,
                }
            )
    return rows


def claim_rows(runs_dir: str | Path | None = None) -> list[dict]:
    """Table 1's claims from ``<runs_dir>/bench/latency.json`` (default ``data/runs``), for
    ``python -m lorakit.runs claims``; "not run" without a full-size record in today's format.
    Each row names the record it comes from (``records``)."""
    from lorakit.runs import RUNS_DIR

    path = Path(runs_dir if runs_dir is not None else RUNS_DIR) / "bench" / "latency.json"
    record = json.loads(path.read_text()) if path.is_file() else None
    res = (record or {}).get("results", {})
    fresh = is_current(res)
    if record is None or record.get("preset") == "small" or not fresh:
        why = (
            "no record"
            if record is None
            else "the record predates the medians and CUDA graphs"
            if not fresh
            else "only a --small smoke record"
        )
        return [
            {
                "chapter": 7,
                "claim": f"{m} adds latency at batch 1, less at large batches",
                "paper": PAPER[m],
                "ours": "not run",
                "verdict": "not run",
                "why": f"{why}: run `python -m lorakit.bench latency` on a GPU",
            }
            for m in ("adapter_l", "adapter_h")
        ]
    return [{**row, "records": [str(path)]} for row in claims(res)]
