"""Chapters 8-9's grid: the weight sets and ranks of Tables 5 and 6, the presets, the plan.

Held apart from :mod:`lorakit.experiments.which_rank` (which re-exports every name) so that the
runner and the reports (:mod:`lorakit.experiments.which_rank_report`,
:mod:`lorakit.experiments.subspace_report`) all read the grid from here.
"""

from __future__ import annotations

from lorakit.experiments import _grid_command
from lorakit.experiments._grid import run_id
from lorakit.experiments._grid_command import by_preset

GRID = "ch08_which_rank"
BUDGET_RANK, R_LOW = 8, 8
TABLE5 = (("q",), ("k",), ("v",), ("o",), ("q", "k"), ("q", "v"), ("q", "k", "v", "o"))
TABLE6_SETS = (("q",), ("q", "v"), ("q", "k", "v", "o"))
# One row per setting, one column per preset: (ci, cpu, gpu); None: all of the split.
PRESETS: dict[str, dict] = by_preset(
    {
        "train_mrs": (24, 800, None),
        "refs_per_mr": (2, None, None),
        "dev_mrs": (4, 40, None),
        "test_mrs": (4, 20, None),
        "epochs": (1, 1, 2),
        "steps": (3, 40, None),
        "batch_size": (8, 16, 8),
        "lr": (2e-3, 2e-3, 1e-3),
        "warmup": (1, 4, 500),
        "beams": (2, 3, 10),
        "gen_batch": (4, 20, 100),
        "max_new_tokens": (12, 32, 96),
        "log_every": (1, 10, 250),
        "deterministic": (True, True, True),
        "ranks": ((1, 4, 8, 16), (1, 2, 4, 8, 64), (1, 2, 4, 8, 64)),
        "seeds": ((0, 1), (0,), (0, 1, 2)),
        "qv_seeds": ((0, 1), (0, 1), (0, 1, 2)),
        "bootstrap": (50, 1000, 1000),
    },
    label_smoothing=0.1,
)


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
    return _grid_command.settings_for(PRESETS, preset, overrides)
