"""The JSON side of a saved adapter: field checks, the tensors it implies, the keys it allows.

``save_adapter`` writes the config (``lorakit_adapter.json``) as::

    {"format": "lorakit-adapter", "format_version": 3, "lorakit_version": "...",
     "lora": {"r": 4, "alpha": 32, "dropout": 0.1, "init": "gaussian", "rslora": false,
              "bias": "none", "targets": [...]},
     "modules": {"transformer.h.0.attn.c_attn": {"kind": "conv1d", "in": 768, "out": 2304,
                                                  "enable": [true, false, true],
                                                  "slices": ["q", "k", "v"]}, ...},
     "tensors": {"transformer.h.0.attn.c_attn.lora_A": [8, 768], ...},
     "dtype": "torch.float32",
     "weights": {"file": "adapter.safetensors", "sha256": "..."}}

Format 3 added ``slices`` (the names of a fused projection's slices); a format-2 file, which
has none, could only describe GPT-2's fused q, k, v (:data:`FORMAT2_SLICES`).

Everything here runs before a model is touched, so a config with a field of the wrong type, a
rank that does not fit its tensors, or a tensor it does not account for (a bias when its
``bias`` is ``"none"``, any other module's weight) is refused with the field and the remedy.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from torch import nn

from .lora.config import LoRAConfig
from .lora.kinds import linear_dims
from .lora.layers import FusedLoRALinear, LoRAEmbedding
from .lora.settings import SETTINGS, setting_problem
from .lora.targets import Slices, adaptable_modules

FORMAT = "lorakit-adapter"
FORMAT_VERSION = 3
KINDS = ("linear", "conv1d", "embedding")
FORMAT2_SLICES = ("q", "k", "v")  # the only fused projection lorakit wrote before format 3
_DEFAULTS = {f.name: f.default for f in fields(LoRAConfig)}


class AdapterError(ValueError):
    """An adapter that cannot be loaded into this model (wrong base, corrupt or foreign file)."""


def _bad(cfg_path: Path, field: str, problem: str) -> AdapterError:
    return AdapterError(
        f"{cfg_path}: {field} {problem}; the file was edited or written by another tool. Save the "
        "adapter again with lorakit.save_adapter."
    )


def _want(want: str, value: Any) -> str:
    return f"must be {want}, got {value!r} ({type(value).__name__})"


def _posint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def validate_meta(meta: Any, cfg_path: Path) -> None:
    """Check every field's type and range; raise :class:`AdapterError` naming the first bad one."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AdapterError(
            f"{cfg_path} is not a lorakit adapter config (no format={FORMAT!r}). "
            "Was it written by another library? Use lorakit.save_adapter."
        )
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise _bad(cfg_path, "format_version", _want("an integer", version))
    if version > FORMAT_VERSION:
        raise AdapterError(
            f"{cfg_path} has format version {version}, newer than this lorakit "
            f"understands ({FORMAT_VERSION}); upgrade lorakit."
        )
    lora = meta.get("lora")
    if not isinstance(lora, dict):
        raise _bad(cfg_path, "lora", _want("an object of LoRA settings", lora))
    for key in SETTINGS:  # the same checks as LoRAConfig's; r has no default in a file
        value = lora.get(key) if key == "r" else lora.get(key, _DEFAULTS[key])
        problem = setting_problem(key, value)
        if problem is not None:
            raise _bad(cfg_path, f"lora.{key}", f"{problem} ({type(value).__name__})")
    modules = meta.get("modules")
    if not isinstance(modules, dict) or not modules:
        raise _bad(cfg_path, "modules", _want("an object {module name: description}", modules))
    for name, mod in modules.items():
        _check_module(cfg_path, name, mod)
    tensors = meta.get("tensors")
    if not isinstance(tensors, dict) or not all(
        isinstance(s, list) and all(isinstance(n, int) and n >= 0 for n in s)
        for s in tensors.values()
    ):
        raise _bad(cfg_path, "tensors", _want("an object {tensor name: shape list}", tensors))
    weights = meta.get("weights")
    if weights is not None and not (
        isinstance(weights, dict) and isinstance(weights.get("sha256"), str)
    ):
        raise _bad(cfg_path, "weights", _want("an object with the weights' sha256", weights))


def _check_module(cfg_path: Path, name: str, mod: Any) -> None:
    """Check one entry of ``modules``: its kind, shape and (fused projections) slices."""
    where = f"modules[{name!r}]"
    if not isinstance(mod, dict) or mod.get("kind") not in KINDS:
        raise _bad(cfg_path, f"{where}.kind", _want(f"one of {KINDS}", mod))
    if mod["kind"] == "embedding":
        shape = mod.get("shape")
        if not (isinstance(shape, list) and len(shape) == 2 and all(map(_posint, shape))):
            raise _bad(cfg_path, f"{where}.shape", _want("[vocab, dim]", shape))
        return
    for key in ("in", "out"):
        if not _posint(mod.get(key)):
            raise _bad(cfg_path, f"{where}.{key}", _want("a positive integer", mod.get(key)))
    enable = mod.get("enable")
    if enable is not None and not (
        isinstance(enable, list) and enable and all(isinstance(e, bool) for e in enable)
    ):
        raise _bad(cfg_path, f"{where}.enable", _want("a list of true/false", enable))
    slices = mod.get("slices")
    if slices is not None and not (
        isinstance(slices, list)
        and enable is not None
        and len(slices) == len(enable)
        and all(isinstance(n, str) and n for n in slices)
    ):
        raise _bad(
            cfg_path, f"{where}.slices", _want("a list of names, one per flag of enable", slices)
        )


def fused_slices(mod: dict) -> Slices | None:
    """The :class:`~lorakit.lora.targets.Slices` of a (validated) module entry, or None."""
    if not mod.get("enable"):
        return None
    return Slices(tuple(mod.get("slices") or FORMAT2_SLICES), tuple(mod["enable"]))


def implied_shapes(meta: dict) -> dict[str, list[int]]:
    """The ``lora_A``/``lora_B`` shapes that a (validated) config's rank and modules imply."""
    r = meta["lora"]["r"]
    shapes = {}
    for name, mod in meta["modules"].items():
        if mod["kind"] == "embedding":
            V, d = mod["shape"]
            a, b = [r, V], [d, r]
        elif mod.get("enable"):
            n_on, n = sum(mod["enable"]), len(mod["enable"])
            a, b = [n_on * r, mod["in"]], [n_on, mod["out"] // n, r]
        else:
            a, b = [r, mod["in"]], [mod["out"], r]
        shapes[f"{name}.lora_A"], shapes[f"{name}.lora_B"] = a, b
    return shapes


def unexpected_keys(meta: dict, keys: list[str]) -> list[str]:
    """Tensor names the config does not account for.

    Allowed: the implied ``lora_A``/``lora_B``; with ``bias="lora_only"`` the ``<module>.base.bias``
    of adapted (non-embedding) modules; with ``bias="all"`` any name ending in ``bias`` (checked
    against the model when loading); with ``bias="none"`` no bias at all.
    """
    implied = implied_shapes(meta)
    bias = meta["lora"].get("bias", "none")
    lora_only = {f"{n}.base.bias" for n, m in meta["modules"].items() if m["kind"] != "embedding"}

    def allowed(key: str) -> bool:
        if key in implied:
            return True
        if bias == "lora_only":
            return key in lora_only
        return bias == "all" and key.split(".")[-1] == "bias"

    return [k for k in keys if not allowed(k)]


def module_identity(name: str, mod: nn.Module) -> dict:
    """What a saved adapter records of an adapted module: kind and shape (and fused slices)."""
    if isinstance(mod, LoRAEmbedding):
        return {"kind": "embedding", "shape": list(mod.base.weight.shape)}
    if isinstance(mod, nn.Embedding):
        return {"kind": "embedding", "shape": list(mod.weight.shape)}
    k, d, fan_in_fan_out = linear_dims(getattr(mod, "base", mod))
    info = {"kind": "conv1d" if fan_in_fan_out else "linear", "in": k, "out": d}
    if isinstance(mod, FusedLoRALinear):
        info["enable"] = list(mod.enable)
        info["slices"] = list(mod.slice_names)
    return info


def check_base(model: nn.Module, meta: dict) -> None:
    """Raise :class:`AdapterError` unless every module the adapter names exists here, same shape."""
    modules = adaptable_modules(model)
    problems = []
    for name, want in meta["modules"].items():
        mod = modules.get(name)
        if mod is None:
            problems.append(f"{name}: not in this model")
            continue
        have = module_identity(name, mod)
        have.pop("enable", None)
        have.pop("slices", None)
        want_base = {k: v for k, v in want.items() if k not in ("enable", "slices")}
        if have != want_base:
            problems.append(f"{name}: adapter made for {want_base}, this model has {have}")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise AdapterError(
            "This adapter was made for a different base model: "
            + "; ".join(problems[:5])
            + more
            + ". Load it into the base it was trained on."
        )
