"""Chapter 7's grid: the methods, their sizes and learning rates per preset, and the plan.

Held apart from :mod:`lorakit.experiments.baselines` (which re-exports every name) so that the
runner and the report (:mod:`lorakit.experiments.baselines_report`) both read the grid from here.
"""

from __future__ import annotations

from lorakit.experiments import _grid_command
from lorakit.experiments._grid import run_id
from lorakit.experiments._grid_command import by_preset

LABELS = {
    "ft": "FT",
    "ft_top2": "FT-Top2",
    "bitfit": "BitFit",
    "prefix_embed": "PreEmbed",
    "prefix_layer": "PreLayer",
    "adapter_l": "AdapterL",
    "adapter_h": "AdapterH",
    "lora": "LoRA",
}
TABLE3 = tuple(LABELS)  # the paper's row order
SIZE_NAME = {
    "lora": "r",
    "adapter_h": "r",
    "adapter_l": "r",
    "prefix_embed": "l_p + l_i",
    "prefix_layer": "l_p + l_i",
}
GRID = "ch07_baselines"
# Learning rates per method, (gpu, short). gpu: at the gpu preset's schedule (5 epochs, batch 8,
# ~26k steps), LoRA's and FT's are the rates chapter 6's grid chose at that schedule by mean dev
# loss over 3 seeds (LoRA 1e-3: 1.160, against 1.230 at the paper's 2e-4; FT 5e-5), larger ones
# for the other methods that train few weights. short: runs of a few dozen steps (the ci and cpu
# presets) need larger steps to learn anything.
_RATES = {
    "ft": (5e-5, 2e-4),
    "ft_top2": (1e-4, 5e-4),
    "bitfit": (1e-3, 2e-3),
    "prefix_embed": (1e-3, 5e-3),
    "prefix_layer": (5e-4, 2e-3),
    "adapter_l": (5e-4, 1e-3),
    "adapter_h": (5e-4, 1e-3),
    "lora": (1e-3, 1e-3),
}
LR = {m: (gpu,) for m, (gpu, _) in _RATES.items()}
LR_SHORT = {m: (short,) for m, (_, short) in _RATES.items()}
# One row per setting, one column per preset: (ci, cpu, gpu); None: all of the split.
PRESETS: dict[str, dict] = by_preset(
    {
        "train_mrs": (8, 300, None),
        "refs_per_mr": (2, None, None),
        "dev_mrs": (2, 10, None),
        "test_mrs": (3, 30, None),
        "batch_size": (4, 16, 8),
        "epochs": (1, 1, 5),
        "steps": (2, 60, None),
        "warmup": (1, 6, 500),
        "beams": (2, 4, 10),
        "gen_batch": (3, 30, 100),
        "max_new_tokens": (12, 40, 96),
        "log_every": (1, 10, 250),
        "deterministic": (True, True, True),
        "lrs": (LR_SHORT, LR_SHORT, LR),
        "seeds": ((0, 1), (0,), (0, 1, 2)),
        "sweep_seeds": ((0,), (0,), (0, 1)),
        "sizes": (
            dict(prefix_embed=4, prefix_layer=4, adapter_l=4, adapter_h=2, lora=4),
            dict(prefix_embed=32, prefix_layer=16, adapter_l=8, adapter_h=4, lora=4),
            # gpu: AdapterH at r=64 trains 2.5% of the base, near the paper's 11.09M of GPT-2 M's
            # 354.92M (3.1%); AdapterL at r=8 and LoRA at r=4 train about 0.15%
            dict(prefix_embed=64, prefix_layer=16, adapter_l=8, adapter_h=64, lora=4),
        ),
        "sweep": (
            dict(lora=(1, 4), adapter_h=(2, 8), prefix_embed=(4, 8), prefix_layer=(4, 8)),
            dict(lora=(1, 4, 16), adapter_h=(4, 32), prefix_embed=(8, 32), prefix_layer=(16, 64)),
            dict(
                lora=(1, 4, 16, 64),
                adapter_h=(4, 16, 64, 256),
                prefix_embed=(16, 64, 128, 256, 512),
                prefix_layer=(16, 64, 128, 256, 512),
            ),
        ),
        "bootstrap": (50, 1000, 1000),
    },
    label_smoothing=0.1,
    weight_decay=0.01,
    samples=5,
)
PARTS = ("table3", "figure2", "all")


def plan(settings: dict, part: str = "all") -> list[dict]:
    """Every run of the grid, each once: ``{"id", "part", "method", "size", "lr", "seed"}``,
    seed-major (every configuration at the first seed first: a grid cut short keeps the most
    configurations).

    Table 3: every method at its size, every learning rate of ``settings["lrs"]``, every seed of
    ``settings["seeds"]``. Figure 2: the sweep's sizes at the method's first learning rate and
    the seeds of ``settings["sweep_seeds"]``; a point that Table 3 already makes is not repeated.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}.")
    specs, seen = [], set()

    def add(part_: str, method: str, size, lr: float, seed: int) -> None:
        key = (method, size, lr, seed)
        if key not in seen:
            seen.add(key)
            specs.append(
                {
                    "id": run_id(method=method, size=size, lr=lr, s=seed),
                    "part": part_,
                    "method": method,
                    "size": size,
                    "lr": lr,
                    "seed": seed,
                }
            )

    if part in ("table3", "all"):
        for s in settings["seeds"]:
            for m in TABLE3:
                for lr in settings["lrs"][m]:
                    add("table3", m, settings["sizes"].get(m), lr, s)
    if part in ("figure2", "all"):
        for s in settings["sweep_seeds"]:
            for m, sizes in settings["sweep"].items():
                for size in sizes:
                    add("figure2", m, size, settings["lrs"][m][0], s)
    return specs


def settings_for(preset: str, overrides: dict | None = None) -> dict:
    """The preset's settings with ``overrides`` applied (unknown keys are an error); ``lrs``
    given for some methods keeps the preset's rates of the others."""
    settings = _grid_command.settings_for(PRESETS, preset, overrides)
    settings["lrs"] = {**PRESETS[preset]["lrs"], **settings["lrs"]}
    return settings
