"""Saving and loading LoRA adapters: ``adapter.safetensors`` + ``adapter_config.json``.

The JSON holds the LoRA settings, the lorakit version and the identity of the base: every
adapted module's name, kind and shape. Loading checks all of it *before* touching the model,
so an adapter made for another base, or a truncated or foreign file, gives a clear error and
leaves the model as it was.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import torch
from torch import nn

from .lora.apply import (
    LoRAConfig,
    _adaptable,
    apply_lora,
    lora_layers,
    lora_state_dict,
)
from .lora.layers import FusedLoRALinear, LoRAEmbedding, base_dims, lora_scaling

FORMAT = "lorakit-adapter"
FORMAT_VERSION = 1
WEIGHTS = "adapter.safetensors"
CONFIG = "adapter_config.json"


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    A crash or an error mid-write leaves any earlier file at ``path`` as it was, never a
    half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


class AdapterError(ValueError):
    """An adapter that cannot be loaded into this model (wrong base, corrupt or foreign file)."""


def _module_identity(name: str, mod: nn.Module) -> dict:
    if isinstance(mod, LoRAEmbedding):
        return {"kind": "embedding", "shape": list(mod.base.weight.shape)}
    if isinstance(mod, nn.Embedding):
        return {"kind": "embedding", "shape": list(mod.weight.shape)}
    layer_base = getattr(mod, "base", mod)
    k, d, fan = base_dims(layer_base)
    info = {"kind": "conv1d" if fan else "linear", "in": k, "out": d}
    if isinstance(mod, FusedLoRALinear):
        info["enable"] = list(mod.enable)
    return info


def _lora_config_of(model: nn.Module) -> dict:
    cfg = getattr(model, "_lorakit_config", None)
    return cfg.to_dict() if isinstance(cfg, LoRAConfig) else {}


def save_adapter(model: nn.Module, path: str | os.PathLike, config: LoRAConfig | None = None) -> Path:
    """Save only the LoRA weights of ``model`` (and its settings) to the folder ``path``.

    Returns the folder. Files are written to temporary names and renamed, so an interrupted
    save never leaves a half-written adapter behind.
    """
    from safetensors.torch import save_file

    from . import __version__

    layers = list(lora_layers(model))
    if not layers:
        raise ValueError("Cannot save an adapter: the model has no LoRA layers. "
                         "Call lorakit.apply_lora(model, config) first.")
    if any(layer.merged for _, layer in layers):
        raise ValueError("The model's LoRA layers are merged; call lorakit.unmerge_lora(model) "
                         "before saving so that the base weights and the adapter stay separate.")
    first = layers[0][1]
    cfg = config.to_dict() if config is not None else _lora_config_of(model)
    if not cfg:  # LoRA layers built by hand: their settings must agree to describe them in one config
        settings = {(layer.r, layer.alpha, layer.scaling) for _, layer in layers}
        if len(settings) > 1:
            raise ValueError("The LoRA layers have different ranks or alphas; pass "
                             "config=LoRAConfig(...) describing them, or save them separately.")
        cfg = {"r": first.r, "alpha": first.alpha,
               "rslora": abs(first.scaling - first.alpha / first.r) > 1e-12}
    bias = cfg.get("bias", "none")
    tensors = {k: v.detach().contiguous().cpu() for k, v in lora_state_dict(model, bias).items()}
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "lorakit_version": __version__,
        "lora": cfg,
        "modules": {name: _module_identity(name, layer) for name, layer in layers},
        "tensors": {k: list(v.shape) for k, v in tensors.items()},
        "dtype": str(next(iter(tensors.values())).dtype),
    }
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        save_file(tensors, os.path.join(tmp, WEIGHTS), metadata={"format": FORMAT})
        Path(tmp, CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(os.path.join(tmp, WEIGHTS), out / WEIGHTS)
        os.replace(os.path.join(tmp, CONFIG), out / CONFIG)
    return out


def read_adapter(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read and validate an adapter folder: ``(config, tensors)``; raises :class:`AdapterError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(path)
    cfg_path, w_path = folder / CONFIG, folder / WEIGHTS
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} does not exist: an adapter folder written by "
                                    f"lorakit.save_adapter holds {CONFIG} and {WEIGHTS}.")
    try:
        meta = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AdapterError(f"{cfg_path} is not valid JSON ({e}); the file is corrupt. "
                           "Save the adapter again.") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AdapterError(f"{cfg_path} is not a lorakit adapter config (no format={FORMAT!r}). "
                           "Was it written by another library? Use lorakit.save_adapter.")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise AdapterError(f"{cfg_path} has format version {meta['format_version']}, newer than this "
                           f"lorakit understands ({FORMAT_VERSION}); upgrade lorakit.")
    try:
        tensors = load_file(str(w_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise AdapterError(f"{w_path} cannot be read as safetensors ({e}): it is truncated or not "
                           "an adapter file. Save the adapter again.") from e
    expected = meta.get("tensors", {})
    if set(expected) != set(tensors) or any(list(tensors[k].shape) != v for k, v in expected.items()):
        raise AdapterError(f"{w_path} does not hold the tensors its config lists; the folder mixes "
                           "files from different saves. Save the adapter again.")
    implied = _implied_shapes(meta, cfg_path)
    wrong = [k for k, shape in implied.items() if k not in tensors or list(tensors[k].shape) != shape]
    extra = [k for k in tensors if k not in implied and not k.endswith("bias")]
    if wrong or extra:
        raise AdapterError(f"{cfg_path}: its LoRA settings (r={meta['lora'].get('r')}) do not match the "
                           f"tensors {(wrong + extra)[:4]} in {w_path.name}; the config was edited or "
                           "the files come from different saves. Save the adapter again.")
    return meta, tensors


def _implied_shapes(meta: dict, cfg_path: Path) -> dict[str, list[int]]:
    """The ``lora_A``/``lora_B`` shapes that the config's rank and module list imply."""
    try:
        r = int(meta["lora"]["r"])
        shapes = {}
        for name, mod in meta["modules"].items():
            if mod["kind"] == "embedding":
                V, d = mod["shape"]
                a, b = [r, V], [d, r]
            elif mod.get("enable"):
                n_on, n = sum(map(bool, mod["enable"])), len(mod["enable"])
                a, b = [n_on * r, mod["in"]], [n_on, mod["out"] // n, r]
            else:
                a, b = [r, mod["in"]], [mod["out"], r]
            shapes[f"{name}.lora_A"], shapes[f"{name}.lora_B"] = a, b
        return shapes
    except (KeyError, TypeError, ValueError) as e:
        raise AdapterError(f"{cfg_path} lacks a LoRA setting or module description ({e!r}); "
                           "it is corrupt or from another tool. Save the adapter again.") from e


def _check_base(model: nn.Module, meta: dict) -> None:
    modules = _adaptable(model)
    problems = []
    for name, want in meta["modules"].items():
        mod = modules.get(name)
        if mod is None:
            problems.append(f"{name}: not in this model")
            continue
        have = _module_identity(name, mod)
        have.pop("enable", None)
        want_base = {k: v for k, v in want.items() if k != "enable"}
        if have != want_base:
            problems.append(f"{name}: adapter made for {want_base}, this model has {have}")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise AdapterError("This adapter was made for a different base model: "
                           + "; ".join(problems[:5]) + more
                           + ". Load it into the base it was trained on.")


def load_adapter(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load an adapter saved by :func:`save_adapter` into ``model`` (in place) and return it.

    A model without LoRA gets LoRA applied with the saved settings first. A model that already
    has LoRA on the same modules gets its A and B replaced (task switching); merged layers are
    unmerged, updated and merged again.
    """
    meta, tensors = read_adapter(path)
    _check_base(model, meta)
    existing = dict(lora_layers(model))
    if existing:
        if set(existing) != set(meta["modules"]):
            raise AdapterError(
                f"The model has LoRA on {sorted(existing)[:4]}..., the adapter on "
                f"{sorted(meta['modules'])[:4]}...; load it into a fresh base instead.")
        lora = meta["lora"]
        want_scaling = lora_scaling(lora.get("alpha") or lora["r"], lora["r"], lora.get("rslora", False))
        for name, want in meta["modules"].items():
            if list(getattr(existing[name], "enable", [])) != want.get("enable", []):
                raise AdapterError(f"{name}: the adapter's slices {want.get('enable')} differ from the "
                                   "model's LoRA layer; load it into a fresh base instead.")
            if abs(existing[name].scaling - want_scaling) > 1e-9 * max(1.0, abs(want_scaling)):
                raise AdapterError(
                    f"{name}: the adapter was trained with scaling {want_scaling:g} (alpha/r), the "
                    f"model's LoRA layer uses {existing[name].scaling:g}; load it into a fresh base, "
                    "where LoRA is applied with the adapter's own settings.")
    sd = model.state_dict()
    if existing:
        wrong = [k for k, v in tensors.items() if k not in sd or sd[k].shape != v.shape]
        if wrong:
            raise AdapterError(f"Tensors {wrong[:4]} do not fit this model's LoRA layers (rank or "
                               "shape differs); load it into a fresh base instead.")
    else:
        fresh_names = {k.replace(".base.", "."): v for k, v in tensors.items() if "lora_" not in k}
        wrong = [k for k, v in fresh_names.items() if k not in sd or sd[k].shape != v.shape]
        if wrong:
            raise AdapterError(f"Bias tensors {wrong[:4]} of the adapter do not fit this model.")
        lora = dict(meta["lora"])
        names = list(meta["modules"])
        if any(w.get("enable") for w in meta["modules"].values()):
            on = [s for s, e in zip("qkv", next(w["enable"] for w in meta["modules"].values()
                                               if w.get("enable"))) if e]
            names = [n for n in names if not meta["modules"][n].get("enable")] + on
        lora["targets"] = [n if n in ("q", "k", "v") else f"re:{re.escape(n)}" for n in names]
        try:
            config = LoRAConfig(**lora)
        except (TypeError, ValueError) as e:
            raise AdapterError(f"The adapter's LoRA settings are not valid ({e}); it is corrupt or "
                               "from another version. Save the adapter again.") from e
        apply_lora(model, config)
    merged = [layer for layer in dict(lora_layers(model)).values() if layer.merged]
    for layer in merged:
        layer.unmerge()
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if unexpected:
        raise AdapterError(f"Unexpected tensors {unexpected[:4]} in the adapter.")
    for layer in merged:
        layer.merge()
    return model

