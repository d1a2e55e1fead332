"""Saving and loading LoRA adapters: ``adapter.safetensors`` + ``lorakit_adapter.json``.

The JSON holds the LoRA settings, the lorakit version, the identity of the base (every adapted
module's name, kind and shape) and the SHA-256 of the weights file. Loading checks all of it
*before* touching the model, so an adapter made for another base, or a truncated, edited or
foreign file, gives a clear error and leaves the model as it was.

The config's name is lorakit's own: ``adapter_config.json`` is PEFT's, and saving into a PEFT
folder must not overwrite it. Adapters saved by earlier lorakit versions, whose config was called
``adapter_config.json`` and carries ``"format": "lorakit-adapter"``, still load.

A save is all-or-nothing: the new weights go to a hidden temporary file, then the config (which
names the weights' hash) replaces the old one in one rename, the commit point, then the weights
take their place. A save killed at any moment leaves the previous adapter or the new one, never a
mix: the loader checks the hash, and reads the new weights from the temporary file when the kill
fell between the last two renames. Temporary files of killed saves are removed by the next save.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import torch
from torch import nn

from ._version import __version__
from .adapter_meta import (
    FORMAT,
    FORMAT_VERSION,
    AdapterError,
    check_base,
    fused_slices,
    implied_shapes,
    module_identity,
    unexpected_keys,
    validate_meta,
)
from .fileio import atomic_write, commit, stage
from .lora.apply import apply_lora_to, lora_layers, lora_state_dict
from .lora.config import LoRAConfig
from .lora.layers import lora_scaling

__all__ = [
    "AdapterError",
    "CONFIG",
    "FORMAT",
    "FORMAT_VERSION",
    "LEGACY_CONFIG",
    "WEIGHTS",
    "load_adapter",
    "read_adapter",
    "save_adapter",
]

WEIGHTS = "adapter.safetensors"
CONFIG = "lorakit_adapter.json"
LEGACY_CONFIG = "adapter_config.json"  # lorakit < format 2 (and PEFT's name: never written)
_PENDING = f".{WEIGHTS}."  # prefix of the hidden weights of a save in progress


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside ``torch.compile`` (``_orig_mod``) and (Distributed)DataParallel."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif type(model).__name__ == "OptimizedModule" and hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


_WRAPPED = re.compile(r"(^|\.)_orig_mod(?=\.|$)")


def _plain_name(name: str) -> str:
    """A module or tensor name without the ``_orig_mod`` of compiled submodules."""
    return _WRAPPED.sub("", name).lstrip(".")


def _clean_stale(folder: Path) -> None:
    """Remove what killed saves left: hidden temporary files, ``tmp*`` folders of old saves."""
    for item in folder.iterdir():
        if (
            item.is_file()
            and item.name.startswith((_PENDING, f".{CONFIG}."))
            and item.name.endswith(".tmp")
        ):
            item.unlink(missing_ok=True)
        elif (
            item.is_dir()
            and item.name.startswith("tmp")
            and {p.name for p in item.iterdir()} <= {WEIGHTS, LEGACY_CONFIG}
        ):
            shutil.rmtree(item, ignore_errors=True)


def _lora_config_of(model: nn.Module) -> dict:
    cfg = getattr(model, "_lorakit_config", None)
    return cfg.to_dict() if isinstance(cfg, LoRAConfig) else {}


def _target_folder(path: str | os.PathLike) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"{out} is a file; save_adapter writes a folder ({WEIGHTS} + {CONFIG}). "
            "Pass the path of a folder (it is created if missing)."
        )
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(
                    f"{parent} is a file, so the folder {out} cannot be created there; "
                    "choose another path."
                )
            break
    return out


def save_adapter(
    model: nn.Module, path: str | os.PathLike, config: LoRAConfig | None = None
) -> Path:
    """Save only the LoRA weights of ``model`` (and its settings) to the folder ``path``.

    ``model`` may be wrapped by ``torch.compile`` or ``(Distributed)DataParallel``: the names on
    disk are those of the plain model. Other files in the folder are left alone. Returns the
    folder. The save is all-or-nothing (see the module docstring).
    """
    from safetensors.torch import save as to_bytes

    out = _target_folder(path)
    model = _unwrap(model)
    layers = list(lora_layers(model))
    if not layers:
        raise ValueError(
            "Cannot save an adapter: the model has no LoRA layers. "
            "Call lorakit.apply_lora(model, config) first."
        )
    if any(layer.merged for _, layer in layers):
        raise ValueError(
            "The model's LoRA layers are merged; call lorakit.unmerge_lora(model) "
            "before saving so that the base weights and the adapter stay separate."
        )
    cfg = config.to_dict() if config is not None else _lora_config_of(model)
    if not cfg:  # LoRA layers built by hand: describe them by the first one
        first = layers[0][1]
        cfg = {
            "r": first.r,
            "alpha": first.alpha,
            "rslora": abs(first.scaling - first.alpha / first.r) > 1e-12,
        }
    want = lora_scaling(cfg.get("alpha") or cfg["r"], cfg["r"], cfg.get("rslora", False))
    odd = [
        n for n, layer in layers if layer.r != cfg["r"] or abs(layer.scaling - want) > 1e-9 * want
    ]
    if odd:
        raise ValueError(
            f"The LoRA layers {odd[:3]} have another rank or scaling than r={cfg['r']}, "
            f"scaling={want:g}; one adapter file describes one setting. Pass "
            "config=LoRAConfig(...) that matches all layers, or save them separately."
        )
    bias = cfg.get("bias", "none")
    tensors = {
        _plain_name(k): v.detach().contiguous().cpu()
        for k, v in lora_state_dict(model, bias).items()
    }
    data = to_bytes(tensors, metadata={"format": FORMAT})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lorakit_version": __version__,
        "lora": cfg,
        "modules": {_plain_name(name): module_identity(name, layer) for name, layer in layers},
        "tensors": {k: list(v.shape) for k, v in tensors.items()},
        "dtype": str(next(iter(tensors.values())).dtype),
        "weights": {"file": WEIGHTS, "sha256": hashlib.sha256(data).hexdigest()},
    }
    out.mkdir(parents=True, exist_ok=True)
    _clean_stale(out)
    pending = stage(out / WEIGHTS, lambda tmp: Path(tmp).write_bytes(data))  # named _PENDING*
    text = json.dumps(meta, indent=2) + "\n"
    atomic_write(out / CONFIG, lambda tmp: Path(tmp).write_text(text))  # the commit point
    commit(pending, out / WEIGHTS)
    return out


def _find_config(folder: Path) -> Path:
    if folder.is_file():
        raise FileNotFoundError(
            f"{folder} is a file; pass the adapter's folder (it holds {CONFIG} and {WEIGHTS})."
        )
    if (folder / CONFIG).is_file():
        return folder / CONFIG
    legacy = folder / LEGACY_CONFIG
    if legacy.is_file():
        return legacy  # an adapter of an earlier lorakit, or another library's (refused below)
    raise FileNotFoundError(
        f"{folder / CONFIG} does not exist: an adapter folder written by "
        f"lorakit.save_adapter holds {CONFIG} and {WEIGHTS}."
    )


def _weights_bytes(folder: Path, meta: dict) -> bytes:
    """The weights' bytes: the file whose SHA-256 the config names (see the module docstring)."""
    w_path = folder / WEIGHTS
    want = (meta.get("weights") or {}).get("sha256")
    candidates = [w_path] + sorted(folder.glob(f"{_PENDING}*.tmp")) if want else [w_path]
    for path in candidates:
        if not path.is_file():
            continue
        data = path.read_bytes()
        if want is None or hashlib.sha256(data).hexdigest() == want:
            return data
    if not w_path.is_file():
        raise FileNotFoundError(
            f"{w_path} does not exist: an adapter folder written by "
            f"lorakit.save_adapter holds {CONFIG} and {WEIGHTS}."
        )
    raise AdapterError(
        f"{w_path} is not the file its config describes (SHA-256 differs): it is "
        "truncated, edited, or from another save. Save the adapter again."
    )


def read_adapter(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read and validate an adapter folder: ``(config, tensors)``; raises :class:`AdapterError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load as from_bytes

    folder = Path(path)
    cfg_path = _find_config(folder)
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AdapterError(
            f"{cfg_path} is not valid JSON ({e}); the file is corrupt. Save the adapter again."
        ) from e
    if cfg_path.name == LEGACY_CONFIG and isinstance(meta, dict) and meta.get("format") != FORMAT:
        kind = "a PEFT adapter (peft_type)" if "peft_type" in meta else "another library's adapter"
        raise AdapterError(
            f"{cfg_path} is not a lorakit adapter config but {kind}; lorakit reads "
            f"folders written by lorakit.save_adapter ({CONFIG})."
        )
    validate_meta(meta, cfg_path)
    w_path = folder / WEIGHTS
    data = _weights_bytes(folder, meta)
    try:
        tensors = from_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise AdapterError(
            f"{w_path} cannot be read as safetensors ({e}): it is truncated or not "
            "an adapter file. Save the adapter again."
        ) from e
    expected = meta["tensors"]
    if set(expected) != set(tensors) or any(
        list(tensors[k].shape) != v for k, v in expected.items()
    ):
        raise AdapterError(
            f"{w_path} does not hold the tensors its config lists; the folder mixes "
            "files from different saves. Save the adapter again."
        )
    implied = implied_shapes(meta)
    wrong = [
        k for k, shape in implied.items() if k not in tensors or list(tensors[k].shape) != shape
    ]
    extra = unexpected_keys(meta, list(tensors))
    if wrong or extra:
        raise AdapterError(
            f"{cfg_path}: its LoRA settings (r={meta['lora']['r']}, bias="
            f"{meta['lora'].get('bias', 'none')!r}) do not account for the tensors "
            f"{(wrong + extra)[:4]} in {w_path.name}; the config was edited or the "
            "files come from different saves. Save the adapter again."
        )
    return meta, tensors


def _target_names(model: nn.Module, meta: dict, tensors: dict, adapted: bool) -> list[str]:
    """Tensors that do not fit ``model`` by name and shape, as they will be named once loaded.

    In a model without LoRA yet, ``<module>.base.bias`` is still ``<module>.bias`` and the LoRA
    tensors do not exist: those are checked by :func:`_check_base` and the implied shapes.
    """
    sd = model.state_dict()
    wrong = []
    for key, value in tensors.items():
        if not adapted and "lora_" in key.rsplit(".", 1)[-1]:
            continue
        name = key if adapted else key.replace(".base.", ".")
        if name not in sd or sd[name].shape != value.shape:
            wrong.append(key)
    return wrong


def load_adapter(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load an adapter saved by :func:`save_adapter` into ``model`` (in place) and return it.

    A model without LoRA gets LoRA applied with the saved settings first. A model that already
    has LoRA on the same modules gets its A and B replaced (task switching); merged layers are
    unmerged, updated and merged again. Every tensor is checked against the config and the model
    before anything changes. ``model`` may be wrapped by ``torch.compile`` or DataParallel.
    """
    outer = model
    model = _unwrap(model)
    meta, tensors = read_adapter(path)
    check_base(model, meta)
    existing = dict(lora_layers(model))
    if existing:
        if set(existing) != set(meta["modules"]):
            raise AdapterError(
                f"The model has LoRA on {sorted(existing)[:4]}..., the adapter on "
                f"{sorted(meta['modules'])[:4]}...; load it into a fresh base instead."
            )
        lora = meta["lora"]
        want_scaling = lora_scaling(
            lora.get("alpha") or lora["r"], lora["r"], lora.get("rslora", False)
        )
        for name, want in meta["modules"].items():
            if list(getattr(existing[name], "enable", [])) != want.get("enable", []):
                raise AdapterError(
                    f"{name}: the adapter's slices {want.get('enable')} differ from the "
                    "model's LoRA layer; load it into a fresh base instead."
                )
            if abs(existing[name].scaling - want_scaling) > 1e-9 * max(1.0, abs(want_scaling)):
                raise AdapterError(
                    f"{name}: the adapter was trained with scaling {want_scaling:g} (alpha/r), the "
                    f"model's LoRA layer uses {existing[name].scaling:g}; load it into a fresh "
                    "base, where LoRA is applied with the adapter's own settings."
                )
    wrong = _target_names(model, meta, tensors, bool(existing))
    if wrong:
        what = "LoRA layers (rank or shape differs)" if existing else "model"
        raise AdapterError(
            f"Tensors {wrong[:4]} of the adapter do not fit this {what}; load it into "
            "the base it was trained on (a fresh one to change the rank)."
        )
    if not existing:
        lora = {k: v for k, v in meta["lora"].items() if k in LoRAConfig.__dataclass_fields__}
        lora.setdefault("targets", [f"re:{re.escape(n)}" for n in meta["modules"]])  # recorded only
        try:
            config = LoRAConfig(**lora)
        except (TypeError, ValueError) as e:
            raise AdapterError(
                f"The adapter's LoRA settings are not valid ({e}); it is corrupt or "
                "from another version. Save the adapter again."
            ) from e
        apply_lora_to(
            model, config, {name: fused_slices(mod) for name, mod in meta["modules"].items()}
        )
    merged = [layer for layer in dict(lora_layers(model)).values() if layer.merged]
    for layer in merged:
        layer.unmerge()
    model.load_state_dict(tensors, strict=False)  # every key was checked above
    for layer in merged:
        layer.merge()
    return outer
