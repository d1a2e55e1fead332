"""Saving and loading a method's trainable state: ``trainable.safetensors`` + ``method.json``.

The tensors are the model's ``requires_grad`` parameters (:func:`lorakit.train.save_trainable`);
the JSON holds the method's name and config and the base model's shape, so that
:func:`load_method` can re-apply the method to a fresh base and check the base first.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from lorakit.fileio import atomic_write
from lorakit.train import load_trainable, save_trainable

from .common import MethodReport, applied_method, gpt2_parts

WEIGHTS, META = "trainable.safetensors", "method.json"
FORMAT = "lorakit.baselines/1"


def _base_shape(model: nn.Module) -> dict[str, int]:
    transformer, blocks = gpt2_parts(model)
    cfg = transformer.config
    return {
        "n_layer": len(blocks),
        "n_embd": cfg.n_embd,
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.n_positions,
    }


def save_method(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write the trainable parameters and the method's config of ``model`` into ``directory``.

    Raises
    ------
    ValueError
        If no method from :mod:`lorakit.baselines` was applied to ``model``.
    """
    applied = applied_method(model)
    if applied is None:
        raise ValueError(
            "The model carries no method; apply one with "
            "lorakit.baselines.apply_method(model, name, ...) before saving."
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_trainable(model, directory / WEIGHTS)
    meta = {"format": FORMAT, **applied, "base": _base_shape(model)}
    text = json.dumps(meta, indent=2) + "\n"
    atomic_write(directory / META, lambda tmp: Path(tmp).write_text(text))
    return directory


def read_method(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``method.json`` of a saved method: ``{"format", "method", "config", "base"}``.

    Raises
    ------
    FileNotFoundError
        If ``directory`` lacks ``method.json`` or ``trainable.safetensors``.
    ValueError
        If ``method.json`` is not one written by :func:`save_method`.
    """
    directory = Path(directory)
    for name in (META, WEIGHTS):
        if not (directory / name).is_file():
            raise FileNotFoundError(
                f"No {name} in {directory}; save with "
                "lorakit.baselines.save_method(model, directory)."
            )
    try:
        meta = json.loads((directory / META).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{directory / META} is not valid JSON ({err}).") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(
            f"{directory / META} was not written by lorakit.baselines.save_method "
            f"(expected format {FORMAT!r})."
        )
    return meta


def load_method(model: nn.Module, directory: str | os.PathLike) -> MethodReport | None:
    """Load a saved method into ``model``.

    On a fresh base the method is applied first with its saved config (and its report returned);
    on a model that already carries the same method and config only the weights are loaded
    (``None`` returned). Everything that can be checked is checked before the model changes:
    the files, the base model's shape, the method; the tensors' names and shapes are checked by
    :func:`lorakit.train.load_trainable` before any is copied.

    Raises
    ------
    FileNotFoundError, ValueError
        A missing or foreign file, a base of another shape, or a model carrying another method.
    """
    from . import apply_method

    meta = read_method(directory)
    base = _base_shape(model)
    if meta["base"] != base:
        raise ValueError(
            f"The saved {meta['method']!r} state belongs to a base of shape "
            f"{meta['base']}, this model is {base}; load it into the same base model."
        )
    applied = applied_method(model)
    report = None
    if applied is None:
        report = apply_method(model, meta["method"], **meta["config"])
    elif applied["method"] != meta["method"] or applied["config"] != meta["config"]:
        raise ValueError(
            f"The model carries {applied} but the file holds {meta['method']!r} with "
            f"{meta['config']}; load into a fresh base (it applies the method itself)."
        )
    load_trainable(model, Path(directory) / WEIGHTS)
    return report
