"""Summaries for chapters 8-9: tables with mean ± std, the paper's claims, subspace analysis.

Split out of :mod:`lorakit.experiments.which_rank` (which re-exports everything here); the
leading underscore keeps this module out of ``python -m lorakit.experiments``'s list.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch

from lorakit import analysis


def weights_label(targets) -> str:
    """``["q", "v"]`` -> ``{Wq,Wv}``."""
    return "{" + ",".join(f"W{t}" for t in targets) + "}"


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def summarise(rows: list[dict], targets, r: int) -> dict:
    """Mean and sample std over the seeds of one configuration (std ``None`` for one seed)."""
    mine = [x for x in rows if tuple(x["targets"]) == tuple(targets) and x["r"] == r]
    out = {"targets": list(targets), "r": r, "seeds": [x["seed"] for x in mine],
           "trainable_params": mine[0]["trainable_params"] if mine else None}
    for key in ("bleu", "rouge_l", "ser", "dev_loss"):
        vals = [x[key] for x in mine if x.get(key) is not None]
        out[f"{key}_mean"], out[f"{key}_std"] = _mean_std(vals)
        out[key] = vals
    return out


NOT_RECORDED = "not recorded"


def _pm(mean, std, fmt: str) -> str:
    if mean is None:
        return "n/a"
    return format(mean, fmt) + ("" if std is None else " ± " + format(std, fmt))


def _cell(row: dict, key: str, fmt: str) -> str:
    """Mean ± std of ``key`` in a :func:`summarise` row; "not recorded" when the row predates it."""
    if f"{key}_mean" not in row:
        return NOT_RECORDED
    return _pm(row[f"{key}_mean"], row[f"{key}_std"], fmt)


def format_table(rows: list[dict], template: dict | None) -> str:
    """Table 5 or 6 as text: the template's row, then per row of :func:`summarise` the weight
    set, r, trainable parameters, BLEU, ROUGE-L, SER (%) and dev loss (mean ± std), seeds.

    ``template`` is the results' ``"template"`` entry (its ``"metrics"`` are shown), or ``None``
    for a record made before the template row existed; its cells, and the SER of rows recorded
    before the slot error rate, then read "not recorded".
    """
    head = ("weights", "r", "trainable", "BLEU", "ROUGE-L", "SER %", "dev loss", "seeds")
    scores = {} if template is None else {f"{k}_mean": v for k, v in template["metrics"].items()}
    scores |= {f"{k}_std": None for k in ("bleu", "rouge_l", "ser")}
    lines = [head, ("template", "-", "0", *(_cell(scores, k, ".1f")
                                            for k in ("bleu", "rouge_l", "ser")), "-", "-")]
    lines += [(weights_label(x["targets"]), str(x["r"]), f"{x['trainable_params'] or 0:,}",
               *(_cell(x, k, ".1f") for k in ("bleu", "rouge_l", "ser")),
               _cell(x, "dev_loss", ".3f"), str(len(x["seeds"]))) for x in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(line, widths))) for line in lines)


def clear_difference(a: list[float], b: list[float]) -> bool:
    """Whether the means of ``a`` and ``b`` differ by more than the sum of their sample standard
    deviations (a rule of thumb for "beyond seed noise"; a single value has std 0)."""
    if not a or not b:
        raise ValueError("clear_difference needs at least one value in each list (one per seed).")
    spread = sum(statistics.stdev(x) if len(x) > 1 else 0.0 for x in (a, b))
    return abs(statistics.fmean(a) - statistics.fmean(b)) > spread


def paper_claims(results: dict) -> list[dict]:
    """The paper's claims of §7, each evaluated on ``results`` (a record's results).

    Returns rows ``{"claim", "paper", "ours", "holds"}``; ``holds`` is ``None`` when the results
    lack what the claim needs (e.g. an ``only_adapters`` run has no scores).
    """
    t5 = [x for x in results["table5"] if x["bleu_mean"] is not None]
    t6 = [x for x in results["table6"] if x["bleu_mean"] is not None and x["targets"] == ["q", "v"]]
    rows = []
    if t5 and max(x["bleu_mean"] for x in t5 + t6) == 0:  # e.g. the ci smoke test: nothing learned
        for claim in ("a very low rank suffices ({Wq,Wv})",
                      "more matrices beat a higher rank at one budget"):
            rows.append({"claim": claim, "paper": "Tables 5 and 6",
                         "ours": "every BLEU is 0: too little training to compare", "holds": None})
        t5 = t6 = []
    if t6:
        best, low = max(t6, key=lambda x: x["bleu_mean"]), min(t6, key=lambda x: x["r"])
        stds = [x["bleu_std"] for x in t5 if x["bleu_std"] is not None]
        tol = max(1.0, 2 * statistics.median(stds)) if stds else 1.0
        gap = best["bleu_mean"] - low["bleu_mean"]
        rows.append({"claim": "a very low rank suffices ({Wq,Wv})",
                     "paper": "r=1 is about as good as r=64 (Table 6)",
                     "ours": f"r={low['r']} BLEU {low['bleu_mean']:.1f} vs best r={best['r']} "
                             f"{best['bleu_mean']:.1f}: gap {gap:.1f} (tolerance {tol:.1f})",
                     "holds": gap <= tol})
    if t5:
        multi = max((x for x in t5 if len(x["targets"]) > 1), key=lambda x: x["bleu_mean"])
        single = max((x for x in t5 if len(x["targets"]) == 1), key=lambda x: x["bleu_mean"])
        clear = clear_difference(multi["bleu"], single["bleu"])
        rows.append({"claim": "more matrices beat a higher rank at one budget",
                     "paper": "{Wq,Wv} r=4 and all four r=2 beat any single matrix at r=8",
                     "ours": f"best multi {weights_label(multi['targets'])} r={multi['r']} "
                             f"{multi['bleu_mean']:.1f} vs best single "
                             f"{weights_label(single['targets'])} {single['bleu_mean']:.1f} BLEU "
                             f"({'beyond' if clear else 'within'} seed noise)",
                     "holds": multi["bleu_mean"] > single["bleu_mean"]})
    sub, meta = results["subspace"], results["adapters"]
    top = {m: sub["fig3_6_7"][m][str(meta["analysis_layer"])][0][0] for m in ("q", "v")}
    rows.append({"claim": f"top directions of r={meta['r_low']} and r={meta['r_high']} overlap",
                 "paper": "φ(A_8, A_64, 1, 1) > 0.5 (Figure 3)",
                 "ours": f"layer {meta['analysis_layer']}: φ = {top['q']:.2f} (Wq), "
                         f"{top['v']:.2f} (Wv)", "holds": min(top.values()) > 0.5})
    r7 = str(min(meta["r_table7"]))
    for m in [m for m in ("q", "v") if m in sub["table7"]]:  # the paper reports Wq; we check both
        t7 = sub["table7"][m][r7]
        rows.append({"claim": f"ΔW{m} amplifies directions W{m} does not emphasise",
                     "paper": "‖UᵀWV‖ onto ΔWq's directions ≪ onto Wq's own; factor 21.5 (r=4)",
                     "ours": f"r={r7}: {t7['delta']:.3g} vs {t7['weight']:.3g}, "
                             f"factor {t7['amplification']:.1f}",
                     "holds": t7["delta"] < t7["weight"] and t7["amplification"] > 1})
        rows.append({"claim": f"ΔW{m} correlates with W{m} more than a random matrix does",
                     "paper": "0.32 (ΔWq) vs 0.02 (random), r=4 (Table 7)",
                     "ours": f"{t7['delta']:.3g} vs {t7['random']:.3g}",
                     "holds": t7["delta"] > t7["random"]})
    return rows


def format_claims(rows: list[dict]) -> str:
    """One line per claim: yes/no/n.a., the claim, our number, the paper's."""
    word = {True: "yes", False: "no", None: "n/a"}
    return "\n".join(f"{word[x['holds']]:3s}  {x['claim']}\n     ours:  {x['ours']}\n"
                     f"     paper: {x['paper']}" for x in rows)


# --------------------------------------------------------------------- chapter 9
def _grid(A1, A2) -> list[list[float]]:
    return [[round(v, 4) for v in row] for row in analysis.subspace_similarity_grid(A1, A2).tolist()]


def _top_rows(W: torch.Tensor, n: int) -> torch.Tensor:
    """``diag(σ[:n]) Vh[:n]`` (n, k): a matrix whose right-singular vectors are W's top n."""
    _, s, vh = torch.linalg.svd(W.double(), full_matrices=False)
    return s[:n, None] * vh[:n]


def subspace_analysis(tensors: dict, meta: dict) -> dict:
    """Figures 3, 4, 6-8 and Table 7 from the saved factors (names as :func:`run_which_rank`).

    ``fig3_6_7[m][layer]``: φ(A_{r_low}, A_{r_high}, i, j) grids (r_low, r_high) for m in q, v;
    ``fig3_cross_seed[m]``: φ(A_{r_low} of seed 0, A_{r_high} of seed 1) at the analysis layer:
    Figure 3 free of the shared random start (with one seed, the first r_low rows of A_{r_high}
    start equal to A_{r_low}, and short runs barely move them);
    ``fig4[m]``: φ between the A_{r_high} of seeds 0 and 1 at the analysis layer, and
    ``fig4["random"]`` the same for two random Gaussian (r_high, k) matrices; ``table7[m][r]``:
    :func:`lorakit.analysis.projection_norms` and the amplification factor of ΔW = (α/r) B A;
    ``fig8[r]``: for i = 1..r_high, φ(top-i directions of Wq, the r directions of ΔWq), with a
    random Gaussian matrix in place of ΔWq as ``fig8["random"]``.
    """
    lo, hi, mid = meta["r_low"], meta["r_high"], meta["analysis_layer"]

    def A(r, s, layer, m):
        return tensors[f"qv.r{r}.s{s}.l{layer}.{m}.A"].double()

    def dW(r, m):
        return (meta["alpha"] / r) * tensors[f"qv.r{r}.s0.l{mid}.{m}.B"].double() @ A(r, 0, mid, m)

    k = A(hi, 0, mid, "q").shape[1]
    gen = torch.Generator().manual_seed(1234)
    g1, g2 = (torch.randn(hi, k, generator=gen, dtype=torch.float64) for _ in range(2))
    out = {"fig3_6_7": {m: {str(layer): _grid(A(lo, 0, layer, m), A(hi, 0, layer, m))
                            for layer in meta["layers"]} for m in ("q", "v")},
           "fig3_cross_seed": {m: _grid(A(lo, 0, mid, m), A(hi, 1, mid, m)) for m in ("q", "v")},
           "fig4": {"q": _grid(A(hi, 0, mid, "q"), A(hi, 1, mid, "q")),
                    "v": _grid(A(hi, 0, mid, "v"), A(hi, 1, mid, "v")), "random": _grid(g1, g2)},
           "table7": {}, "fig8": {}}
    for m in ("q", "v"):
        W = tensors[f"W.l{mid}.{m}"].double()
        out["table7"][m] = {}
        for r in meta["r_table7"]:
            norms = analysis.projection_norms(W, dW(r, m), r)
            norms["amplification"] = analysis.amplification_factor(W, dW(r, m), r)
            out["table7"][m][str(r)] = norms
    top = _top_rows(tensors[f"W.l{mid}.q"], hi)
    rand = torch.randn(tensors[f"W.l{mid}.q"].shape, generator=gen, dtype=torch.float64)
    for key, M, r in [(str(r), dW(r, "q"), r) for r in meta["r_table7"]] + [("random", rand, hi)]:
        grid = analysis.subspace_similarity_grid(top, _top_rows(M, r))
        out["fig8"][key] = [round(v, 4) for v in grid[:, r - 1].tolist()]
    return out


def save_adapters(tensors: dict, meta: dict, path: str | Path) -> Path:
    """Write the chapter-9 tensors small: A and W in fp16, B in bf16 (its entries can be tiny)."""
    from safetensors.torch import save_file

    small = {k: v.to(torch.bfloat16 if k.endswith(".B") else torch.float16).contiguous()
             for k, v in tensors.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(small, str(path), metadata={k: str(v) for k, v in meta.items()})
    return path


def load_adapters(path: str | Path) -> tuple[dict, dict]:
    """``(tensors (fp32), meta)`` from :func:`save_adapters`; clear errors if missing/corrupt."""
    import json

    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No adapter file at {path}; make one with `python -m "
                                "lorakit.experiments which-rank --preset P --out DIR`.")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
            tensors = {k: f.get_tensor(k).float() for k in f.keys()}
        meta = {k: json.loads(raw[k]) for k in ("layers", "analysis_layer", "r_low", "r_high",
                                                  "r_table7", "alpha")}
    except (SafetensorError, OSError, KeyError, ValueError) as err:
        raise ValueError(f"{path} is not a chapter-9 adapter file ({type(err).__name__}: {err}); "
                         "regenerate it with `python -m lorakit.experiments which-rank`.") from err
    return tensors, meta
