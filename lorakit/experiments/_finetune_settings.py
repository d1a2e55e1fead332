"""Chapter 6's settings: the presets, the LoRA recipe, the grid, and what a record says of them.

Held apart from :mod:`lorakit.experiments.finetune` (which re-exports every name) so that the
experiment's code reads without its tables.
"""

from __future__ import annotations

import copy

from lorakit.evaluate import PAPER_DECODING
from lorakit.presets import PAPER_E2E, get_preset

METHODS = ("lora", "full")
PRESETS: dict[str, dict] = {
    "ci": dict(
        train_mrs=12,
        dev_mrs=4,
        test_mrs=4,
        refs_per_mr=1,
        epochs=1,
        batch_size=4,
        warmup=1,
        lr={"lora": 2e-4, "full": 5e-5},
        beams=2,
        gen_batch=4,
        max_new_tokens=16,
        log_every=1,
        bootstrap=200,
    ),
    "cpu": dict(
        train_mrs=400,
        dev_mrs=40,
        test_mrs=60,
        refs_per_mr=None,
        epochs=1,
        batch_size=8,
        warmup=20,
        lr={"lora": 5e-3, "full": 3e-4},
        beams=4,
        gen_batch=30,
        max_new_tokens=48,
        log_every=10,
        bootstrap=1000,
    ),
    "gpu": dict(
        train_mrs=None,
        dev_mrs=None,
        test_mrs=None,
        refs_per_mr=None,
        epochs=PAPER_E2E["epochs"],
        batch_size=PAPER_E2E["batch_size"],
        warmup=PAPER_E2E["warmup"],
        lr=dict(PAPER_E2E["lr"]),
        beams=PAPER_E2E["beams"],
        gen_batch=100,
        max_new_tokens=96,
        log_every=250,
        bootstrap=1000,
    ),
}
LORA = {**PAPER_E2E["lora"], "targets": list(PAPER_E2E["lora"]["targets"])}
#: chapter 6's grid in the ``gpu`` preset: seeds and learning rates per method
GRID = {"seeds": (0, 1, 2), "lr": {"lora": (2e-4, 5e-4, 1e-3), "full": (5e-5, 1e-4)}}
N_SAMPLES = 5
BOOTSTRAP_METRICS = ("bleu", "rouge_l", "ser")


def preset_settings(preset: str | None = None, lr: dict[str, float] | None = None) -> dict:
    """The preset's settings (a copy), with ``lr`` overriding learning rates per method."""
    preset = preset or get_preset()
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; use one of {', '.join(PRESETS)}.")
    settings = copy.deepcopy(PRESETS[preset])
    if lr:
        unknown = set(lr) - set(METHODS)
        if unknown:
            raise ValueError(f"lr given for unknown methods {sorted(unknown)}; use {METHODS}.")
        settings["lr"] = {**settings["lr"], **lr}
    return settings


def base_block(info) -> dict:
    """What a record says about the base model (a :class:`lorakit.models.BaseInfo`)."""
    return {
        "source": info.source,
        "name": info.name,
        "n_params": info.n_params,
        "config": info.config,
        "notice": info.notice,
    }


def settings_block(settings: dict, preset: str) -> dict:
    """The record's ``settings``: the preset's, plus the fixed recipe and decoding."""
    return {
        **settings,
        "lora": LORA,
        "label_smoothing": PAPER_E2E["label_smoothing"],
        "weight_decay": PAPER_E2E["weight_decay"],
        "decoding": PAPER_DECODING,
        "note": "gpu preset: the paper's schedule (all train MRs and references, 5 epochs, "
        "batch 8, warm-up 500), beam 10 on the whole test split"
        if preset == "gpu"
        else f"{preset} preset: reduced sizes",
    }
