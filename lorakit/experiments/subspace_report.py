"""Chapter 9's figures and claims from chapter 8's run records (paper §7.2, §7.3).

``python -m lorakit.experiments subspace-report [--preset P] [--out DIR]`` reads the grid of
:mod:`lorakit.experiments.which_rank` (``data/runs/ch08_which_rank_<preset>/``): the runs of
{Wq,Wv} at r = 4, 8 and the highest rank (``q+v-r8-s0.json`` and its ``.safetensors``, ...),
whose records keep the factors A, B of ΔWq and ΔWv for the first, middle and last layer, and
``base_weights`` (the frozen Wq, Wv of the middle layer). From them:

* **Figure 3 (and 6, 7)** φ(A_8, A_64, i, j) between runs of **different seeds** (every pair
  s ≠ s', averaged). Same-seed pairs are shown apart. They share their random start only in the
  first layer's Wq (drawn first from the seed's stream, so A_8 equals A_64's first 8 rows there);
  every later slice is drawn at an offset that depends on r, so elsewhere the same seed gives
  independent starts;
* **Figure 4** φ between the A_64 of two seeds, beside two random Gaussian matrices;
* **Table 7** ‖UᵀWV‖_F onto ΔW's, W's and random directions and the amplification factor
  (:func:`lorakit.analysis.projection_norms`), per seed, then mean ± sd over seeds;
* **Figure 8** φ(top-i directions of Wq, ΔWq), mean over seeds;
* **how converged** each run is: its dev loss after each epoch and how far A moved from its
  random start (‖A − A₀‖_F / ‖A₀‖_F, averaged over layers); a run is *converged* when its last
  epoch lowered the dev loss by less than :data:`CONVERGED` (relative); a one-epoch run is not
  judged.

Claims (``{"chapter": 9, "claim", "paper", "ours", "verdict", "why"}``) use the values over seeds
(or seed pairs): the *noise* is their sample standard deviation; a value farther than the noise
from the threshold, on the paper's side, reproduces the claim, on the other side does not;
within the noise, or with fewer than 2 values, it is undetermined. The thresholds
(:data:`THRESHOLDS`): φ(1, 1) above 0.5 (Figure 3's reading); ‖UᵀWV‖ onto ΔW's directions less
than a tenth of the way from random directions to W's own top directions (the paper's Wq:
(0.32 - 0.02) / (21.67 - 0.02) = 0.014) for ΔW's directions to count as ones W does not
emphasise (onto W's own directions is the largest value any r directions can give, so a
comparison with it alone could never fail); onto ΔW above onto random; amplification above 5
("≫ 1"; the paper's 21.5 at r = 4).

A factor run made from another build of the base than ``base_weights`` is left out (its ΔW
belongs to other W's) and listed under ``skipped``.
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path

import numpy as np
import torch

from lorakit import analysis
from lorakit.experiments import _grid, _report
from lorakit.experiments._report import claim_row, claims_text
from lorakit.experiments._which_rank_settings import GRID, PRESETS

CONVERGED = 0.01
#: thresholds of the claims (see the module docstring)
THRESHOLDS = {"phi": 0.5, "emphasis": 0.1, "above_random": 0.0, "amplification": 5.0}
TABLE7_CLAIMS = (  # (claim, the paper's numbers); {m} is q or v
    (
        "ΔW{m} (r=4) lies in directions W{m} does not emphasise",
        "‖UᵀWV‖ onto ΔWq 0.32 ≪ onto Wq's own 21.67, random 0.02: 0.014 of the way (Table 7)",
    ),
    (
        "ΔW{m} (r=4) correlates with W{m} more than a random matrix does",
        "0.32 (ΔWq) vs 0.02 (random), Table 7",
    ),
    (
        "ΔW{m} (r=4) amplifies those directions strongly",
        "amplification ‖ΔW‖/‖UᵀWV‖ ≈ 21.5 for Wq (≫ 1; here: > 5)",
    ),
)


def _grid_of(A1: torch.Tensor, A2: torch.Tensor) -> np.ndarray:
    return analysis.subspace_similarity_grid(A1.double(), A2.double()).numpy()


def load(records: list[dict], folder: str | Path | None) -> dict:
    """The factor runs and the base weights of ``records``: ``{"meta", "W", "factors",
    "runs"}``; ``factors[(r, seed)]`` holds the run's tensors (fp32), ``runs[(r, seed)]`` its
    results. ``meta`` is ``None`` (and the rest empty) when the grid has no ``base_weights``;
    ``skipped`` names factor runs made from another build of the base than ``base_weights``."""
    weights = next((r for r in records if r["name"] == "base_weights"), None)
    out = {"meta": None, "W": {}, "factors": {}, "runs": {}, "skipped": []}
    if weights is None:
        return out
    out["meta"], out["W"] = weights["results"], _grid.load_tensors(folder, weights)
    build = (weights["results"].get("base") or {}).get("weights_sha256")
    for rec in records:
        res = rec["results"]
        if rec["name"] in ("base_weights", "template") or res.get("targets") != ["q", "v"]:
            continue
        theirs = (res.get("base") or {}).get("weights_sha256")
        if build and theirs and theirs != build:  # ΔW of other W's: not comparable with these
            out["skipped"].append(rec["name"])
            continue
        tensors = _grid.load_tensors(folder, rec)
        if tensors:
            out["factors"][(res["r"], res["seed"])] = tensors
            out["runs"][(res["r"], res["seed"])] = res
    return out


def convergence(runs: dict) -> list[dict]:
    """Per factor run: dev loss after each epoch, the last epoch's relative change, whether it
    counts as converged (:data:`CONVERGED`; ``None`` for one epoch) and how far A moved."""
    rows = []
    for (r, seed), res in sorted(runs.items()):
        dev = [e["eval_loss"] for e in res.get("evals", [])]
        change = (dev[-2] - dev[-1]) / dev[-2] if len(dev) >= 2 else None
        moved = list((res.get("a_moved") or {}).values())
        rows.append(
            {
                "r": r,
                "seed": seed,
                "dev_loss": dev,
                "last_epoch_change": change,
                "converged": None if change is None else change < CONVERGED,
                "a_moved": statistics.fmean(moved) if moved else None,
                "epochs": res.get("schedule", {}).get("epochs"),
            }
        )
    return rows


def _pairs(factors: dict, r1: int, r2: int, same: bool) -> list[tuple[int, int]]:
    s1 = sorted(s for r, s in factors if r == r1)
    s2 = sorted(s for r, s in factors if r == r2)
    return [
        (a, b) for a, b in itertools.product(s1, s2) if (a == b) == same and (r1 != r2 or a < b)
    ]


def _mean_grid(grids: list[np.ndarray]) -> list[list[float]] | None:
    return np.round(np.mean(grids, axis=0), 4).tolist() if grids else None


def figure3(data: dict) -> dict:
    """φ(A_low, A_high) grids per matrix and layer: ``independent`` (mean over seed pairs s ≠
    s') and ``same_seed`` (mean over s = s'), with the pairs used and φ(1, 1) of each pair at
    the middle layer."""
    meta, f = data["meta"], data["factors"]
    lo, hi, mid = meta["r_low"], meta["r_high"], meta["analysis_layer"]
    out = {"r_low": lo, "r_high": hi}
    for kind, same in (("independent", False), ("same_seed", True)):
        pairs = _pairs(f, lo, hi, same)
        out[kind] = {"pairs": pairs, "grids": {}, "top": {}}
        for m in ("q", "v"):
            out[kind]["grids"][m] = {
                str(layer): _mean_grid(
                    [
                        _grid_of(f[(lo, a)][f"l{layer}.{m}.A"], f[(hi, b)][f"l{layer}.{m}.A"])
                        for a, b in pairs
                    ]
                )
                for layer in meta["layers"]
            }
            out[kind]["top"][m] = [
                analysis.subspace_similarity(
                    f[(lo, a)][f"l{mid}.{m}.A"].double(), f[(hi, b)][f"l{mid}.{m}.A"].double(), 1, 1
                )
                for a, b in pairs
            ]
    return out


def figure4(data: dict) -> dict:
    """φ between A_high of two seeds at the middle layer (mean over pairs), and for two random
    Gaussian (r_high, k) matrices."""
    meta, f = data["meta"], data["factors"]
    hi, mid = meta["r_high"], meta["analysis_layer"]
    pairs = _pairs(f, hi, hi, same=False)
    out = {"pairs": pairs}
    for m in ("q", "v"):
        out[m] = _mean_grid(
            [_grid_of(f[(hi, a)][f"l{mid}.{m}.A"], f[(hi, b)][f"l{mid}.{m}.A"]) for a, b in pairs]
        )
    gen = torch.Generator().manual_seed(1234)
    g1, g2 = (torch.randn(hi, meta["n_embd"], generator=gen, dtype=torch.float64) for _ in range(2))
    out["random"] = _mean_grid([_grid_of(g1, g2)])
    return out


def _delta(data: dict, r: int, seed: int, m: str) -> torch.Tensor:
    """ΔW = (α/r)·B·A of one run at the analysis layer, with the run's own α."""
    meta, f = data["meta"], data["factors"]
    mid = meta["analysis_layer"]
    alpha = data["runs"].get((r, seed), {}).get("alpha", meta["alpha"])
    return (
        (alpha / r)
        * f[(r, seed)][f"l{mid}.{m}.B"].double()
        @ f[(r, seed)][f"l{mid}.{m}.A"].double()
    )


def table7(data: dict) -> dict:
    """Per matrix and rank: each seed's projection norms and amplification, and their mean and
    sample sd over seeds (``None`` for one seed)."""
    meta, f, W = data["meta"], data["factors"], data["W"]
    mid, out = meta["analysis_layer"], {}
    for m in ("q", "v"):
        out[m] = {}
        for r in sorted({4, meta["r_high"]}):
            seeds = sorted(s for rr, s in f if rr == r)
            per = []
            for s in seeds:
                dW = _delta(data, r, s, m)
                norms = analysis.projection_norms(W[f"W.l{mid}.{m}"].double(), dW, r)
                norms["amplification"] = analysis.amplification_factor(W[f"W.l{mid}.{m}"], dW, r)
                per.append(norms)
            summary = {}
            for key in ("delta", "weight", "random", "W_norm", "dW_norm", "amplification"):
                vals = [p[key] for p in per]
                summary[key] = {
                    "values": vals,
                    "mean": statistics.fmean(vals) if vals else None,
                    "sd": statistics.stdev(vals) if len(vals) > 1 else None,
                }
            out[m][str(r)] = {"seeds": seeds, **summary}
    return out


def figure8(data: dict) -> dict:
    """For i = 1..r_high: φ(top-i right-singular directions of Wq, the r directions of ΔWq),
    mean over seeds, per r; ``"random"`` with a random Gaussian matrix in place of ΔWq."""
    meta, f, W = data["meta"], data["factors"], data["W"]
    mid, hi = meta["analysis_layer"], meta["r_high"]
    Wq = W[f"W.l{mid}.q"].double()
    _, s, vh = torch.linalg.svd(Wq, full_matrices=False)
    top = s[:hi, None] * vh[:hi]

    def curve(M: torch.Tensor, r: int) -> np.ndarray:
        _, sm, vm = torch.linalg.svd(M, full_matrices=False)
        return analysis.subspace_similarity_grid(top, sm[:r, None] * vm[:r])[:, r - 1].numpy()

    out = {}
    for r in sorted({4, meta["r_high"]}):
        seeds = sorted(ss for rr, ss in f if rr == r)
        if seeds:
            out[str(r)] = np.round(
                np.mean([curve(_delta(data, r, s, "q"), r) for s in seeds], axis=0), 4
            ).tolist()
    gen = torch.Generator().manual_seed(1234)
    out["random"] = np.round(
        curve(torch.randn(Wq.shape, generator=gen, dtype=torch.float64), hi), 4
    ).tolist()
    return out


def _side(values: list[float], threshold: float, above: bool) -> tuple[str, str]:
    if len(values) < 2:
        return "undetermined", f"{len(values)} value(s): fewer than 2 seeds, no spread to judge by"
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    why = f"mean {mean:.3g}, sd {sd:.2g} over {len(values)} vs {threshold:.3g}"
    if abs(mean - threshold) <= sd:
        return "undetermined", why + ": within the noise"
    return ("reproduced" if (mean > threshold) == above else "not reproduced"), why


def claims(fig3: dict | None, t7: dict | None) -> list[dict]:
    """The paper's §7.2-§7.3 claims, each with a verdict (see the module docstring)."""
    rows = []

    def add(claim, paper, ours, verdict_why):
        rows.append(claim_row(9, claim, paper, ours, *verdict_why))

    if fig3 is None or not fig3["independent"]["pairs"]:
        for m in ("q", "v"):
            add(
                f"ΔW{m}: top directions of r=8 and r=64 overlap across seeds",
                "φ(A_8, A_64, 1, 1) > 0.5 (Figure 3)",
                "not run",
                ("not run", "no pair of {Wq,Wv} runs at r=8 and r=64 with different seeds"),
            )
    else:
        for m in ("q", "v"):
            tops = fig3["independent"]["top"][m]
            add(
                f"ΔW{m}: top directions of r={fig3['r_low']} and r={fig3['r_high']} overlap "
                "across seeds",
                "φ(A_8, A_64, 1, 1) > 0.5 (Figure 3)",
                f"φ(1,1) over {len(tops)} seed pairs: " + ", ".join(f"{t:.2f}" for t in tops),
                _side(tops, THRESHOLDS["phi"], above=True),
            )
    for m in ("q", "v"):
        x = None if t7 is None else t7[m].get("4")
        if not x or not x["seeds"]:
            for claim, paper in TABLE7_CLAIMS:
                add(
                    claim.format(m=m),
                    _paper(paper, m),
                    "not run",
                    ("not run", "no {Wq,Wv} r=4 record"),
                )
            continue
        way = [  # how far onto ΔW sits from random (0) to W's own top directions (1)
            (d - rnd) / (w - rnd)
            for d, w, rnd in zip(x["delta"]["values"], x["weight"]["values"], x["random"]["values"])
        ]
        diff = [d - rnd for d, rnd in zip(x["delta"]["values"], x["random"]["values"])]
        amp = x["amplification"]["values"]
        t = THRESHOLDS
        for (claim, paper), ours, judged in zip(
            TABLE7_CLAIMS,
            (
                "(onto ΔW - random) / (onto W's own - random): "
                + ", ".join(f"{v:.3f}" for v in way),
                "onto ΔW minus onto random: " + ", ".join(f"{v:+.3f}" for v in diff),
                "amplification: " + ", ".join(f"{v:.1f}" for v in amp),
            ),
            (
                _side(way, t["emphasis"], above=False),
                _side(diff, t["above_random"], above=True),
                _side(amp, t["amplification"], above=True),
            ),
        ):
            add(claim.format(m=m), _paper(paper, m), ours, judged)
    return rows


def _paper(numbers: str, m: str) -> str:
    """The paper column of a Table 7 claim: the paper's Table 7 is of Wq, so a ΔWv row says
    that its reference numbers are Wq's."""
    return numbers if m == "q" else f"Wq's (Table 7 has Wq only): {numbers}"


def report(records: list[dict], folder: str | Path | None) -> dict:
    """Chapter 9 from chapter 8's records: ``{"meta", "convergence", "figure3", "figure4",
    "table7", "figure8", "claims", "runs_read"}`` (``meta`` ``None``: nothing recorded yet)."""
    data = load(records, folder)
    if data["meta"] is None or not data["factors"]:
        return {
            "meta": data["meta"],
            "convergence": [],
            "figure3": None,
            "figure4": None,
            "table7": None,
            "figure8": None,
            "claims": claims(None, None),
            "runs_read": [],
            "skipped": [],
        }
    fig3, t7 = figure3(data), table7(data)
    return {
        "meta": data["meta"],
        "convergence": convergence(data["runs"]),
        "figure3": fig3,
        "figure4": figure4(data),
        "table7": t7,
        "figure8": figure8(data),
        "claims": claims(fig3, t7),
        "runs_read": sorted(f"q+v-r{r}-s{s}" for r, s in data["factors"]),
        "skipped": data["skipped"],
    }


def main(argv: list[str] | None = None) -> None:
    _, folder = _report.parse_report_args(
        argv, "subspace-report", __doc__, GRID, PRESETS, records="chapter 8's records"
    )
    rep = report(_grid.load_runs(folder), folder)
    print(f"reads {folder}: {', '.join(rep['runs_read']) or 'no factor runs yet'}")
    if rep.get("skipped"):
        print(f"left out (made from another build of the base): {', '.join(rep['skipped'])}")
    for row in rep["convergence"]:
        print(
            f"  r={row['r']:<3d} seed {row['seed']}: dev loss per epoch "
            f"{[round(v, 3) for v in row['dev_loss']]}, converged {row['converged']}, "
            f"A moved {row['a_moved']:.2f}"
            if row["a_moved"] is not None
            else ""
        )
    if rep["table7"]:
        for m, by_r in rep["table7"].items():
            for r, x in by_r.items():
                if not x["seeds"]:
                    print(f"Table 7 W{m} r={r}: not run")
                    continue
                print(
                    f"Table 7 W{m} r={r}: onto ΔW {x['delta']['mean']:.3g}, onto W "
                    f"{x['weight']['mean']:.3g}, random {x['random']['mean']:.3g}, "
                    f"amplification {x['amplification']['mean']:.1f} ({len(x['seeds'])} seeds)"
                )
    print("\nClaims\n" + claims_text(rep["claims"]))
