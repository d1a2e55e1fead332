"""Chapters 8-9's grid: the weight sets and ranks of Tables 5 and 6, the presets, the plan.

Held apart from :mod:`lorakit.experiments.which_rank` (which re-exports every name) so that the
runner and the reports (:mod:`lorakit.experiments.which_rank_report`,
:mod:`lorakit.experiments.subspace_report`) all read the grid from here.
"""

from __future__ import annotations

from lorakit.experiments._grid import run_id

GRID = "ch08_which_rank"
BUDGET_RANK, R_LOW = 8, 8
TABLE5 = (("q",), ("k",), ("v",), ("o",), ("q", "k"), ("q", "v"), ("q", "k", "v", "o"))
TABLE6_SETS = (("q",), ("q", "v"), ("q", "k", "v", "o"))
_COMMON = dict(refs_per_mr=None, label_smoothing=0.1, bootstrap=1000)
PRESETS: dict[str, dict] = {
    "ci": dict(
        _COMMON,
        train_mrs=24,
        refs_per_mr=2,
        dev_mrs=4,
        test_mrs=4,
        epochs=1,
        steps=3,
        batch_size=8,
        lr=2e-3,
        warmup=1,
        beams=2,
        gen_batch=4,
        max_new_tokens=12,
        log_every=1,
        ranks=(1, 4, 8, 16),
        seeds=(0, 1),
        qv_seeds=(0, 1),
        bootstrap=50,
    ),
    "cpu": dict(
        _COMMON,
        train_mrs=800,
        dev_mrs=40,
        test_mrs=20,
        epochs=1,
        steps=40,
        batch_size=16,
        lr=2e-3,
        warmup=4,
        beams=3,
        gen_batch=20,
        max_new_tokens=32,
        log_every=10,
        ranks=(1, 2, 4, 8, 64),
        seeds=(0,),
        qv_seeds=(0, 1),
    ),
    "gpu": dict(
        _COMMON,
        train_mrs=None,
        dev_mrs=None,
        test_mrs=None,
        epochs=2,
        steps=None,
        batch_size=8,
        lr=1e-3,
        warmup=500,
        beams=10,
        gen_batch=100,
        max_new_tokens=96,
        log_every=250,
        ranks=(1, 2, 4, 8, 64),
        seeds=(0, 1, 2),
        qv_seeds=(0, 1, 2),
    ),
}


def factor_ranks(settings: dict) -> tuple[int, ...]:
    """The {Wq,Wv} ranks whose factors chapter 9 reads: 4 (Table 7), 8 and the highest."""
    return tuple(sorted({4, R_LOW, max(settings["ranks"])}))


def configs(settings: dict) -> list[tuple[tuple[str, ...], int]]:
    """Every (targets, r) of Tables 5 and 6, each once, Table 5 first."""
    out = [(t, BUDGET_RANK // len(t)) for t in TABLE5]
    out += [(t, r) for t in TABLE6_SETS for r in settings["ranks"] if (t, r) not in out]
    return out


def plan(settings: dict, only_adapters: bool = False) -> list[dict]:
    """Every run, seed-major: ``{"id", "targets", "r", "seed", "factors"}``.

    Each configuration gets ``settings["seeds"]``; {Wq,Wv} at :func:`factor_ranks` gets
    ``settings["qv_seeds"]`` too (chapter 9 compares independent seeds) and keeps its factors.
    ``only_adapters``: just those {Wq,Wv} runs (chapter 9's quick live run).
    """
    qv = [(("q", "v"), r) for r in factor_ranks(settings)]
    pairs = qv if only_adapters else configs(settings)
    seeds = sorted(set(settings["seeds"]) | set(settings["qv_seeds"]))
    specs = []
    for s in seeds:
        for t, r in pairs:
            keep = (t, r) in qv
            if s in settings["seeds"] or (keep and s in settings["qv_seeds"]):
                specs.append(
                    {
                        "id": run_id(t=list(t), r=r, s=s),
                        "targets": list(t),
                        "r": r,
                        "seed": s,
                        "factors": keep,
                    }
                )
    return specs


def settings_for(preset: str, overrides: dict | None = None) -> dict:
    """The preset's settings with ``overrides`` applied (unknown keys are an error)."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; use one of {', '.join(PRESETS)}.")
    unknown = sorted(set(overrides or {}) - set(PRESETS[preset]))
    if unknown:
        raise ValueError(f"Unknown settings {unknown}; choose from {sorted(PRESETS[preset])}.")
    return {**PRESETS[preset], **(overrides or {})}
