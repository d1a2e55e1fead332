"""Chapter 6's settings: the presets, the LoRA recipe, the grid, and what a record says of them.

Held apart from :mod:`lorakit.experiments.finetune` (which re-exports every name) so that the
experiment's code reads without its tables.
"""

from __future__ import annotations

import copy

from lorakit.evaluate import PAPER_DECODING
from lorakit.presets import PAPER_E2E, get_preset

METHODS = ("lora", "full")
#: each setting of the presets ``ci``, ``cpu`` and ``gpu``, side by side (``None``: all of them)
# fmt: off
_SETTINGS = {
    #                 ci                             cpu                           gpu
    "train_mrs":      (12,                           400,                          None),
    "dev_mrs":        (4,                            40,                           None),
    "test_mrs":       (4,                            60,                           None),
    "refs_per_mr":    (1,                            None,                         None),
    "epochs":         (1,                            1,                            PAPER_E2E["epochs"]),  # noqa: E501
    "batch_size":     (4,                            8,                            PAPER_E2E["batch_size"]),  # noqa: E501
    "warmup":         (1,                            20,                           PAPER_E2E["warmup"]),  # noqa: E501
    "lr":             ({"lora": 2e-4, "full": 5e-5}, {"lora": 5e-3, "full": 3e-4}, dict(PAPER_E2E["lr"])),  # noqa: E501
    "beams":          (2,                            4,                            PAPER_E2E["beams"]),  # noqa: E501
    "gen_batch":      (4,                            30,                           100),
    "max_new_tokens": (16,                           48,                           96),
    "log_every":      (1,                            10,                           250),
    "bootstrap":      (200,                          1000,                         1000),
    "deterministic":  (True,                         True,                         True),
}
# fmt: on
PRESETS: dict[str, dict] = {
    preset: {key: copy.deepcopy(values[i]) for key, values in _SETTINGS.items()}
    for i, preset in enumerate(("ci", "cpu", "gpu"))
}
LORA = {**PAPER_E2E["lora"], "targets": list(PAPER_E2E["lora"]["targets"])}
#: chapter 6's grid in the ``gpu`` preset: seeds and learning rates per method
GRID = {"seeds": (0, 1, 2), "lr": {"lora": (2e-4, 5e-4, 1e-3, 2e-3), "full": (2e-5, 5e-5, 1e-4)}}
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


def base_block(info, model=None) -> dict:
    """What a record says about the base model (a :class:`lorakit.models.BaseInfo`): which one,
    its size, and which build of it (``weights_sha256``; for the offline base also its corpus's
    SHA-256 and held-out perplexity). ``model``: the base itself, hashed when ``info`` does not
    carry its weights' SHA-256 (a base built by hand rather than by ``load_base``)."""
    weights = info.weights_sha256
    if weights is None and model is not None:
        from lorakit.models.info import weights_sha256

        weights = weights_sha256(model)
    return {
        "source": info.source,
        "name": info.name,
        "n_params": info.n_params,
        "config": info.config,
        "weights_sha256": weights,
        "corpus_sha256": info.corpus_sha256,
        "heldout_perplexity": info.heldout_perplexity,
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
