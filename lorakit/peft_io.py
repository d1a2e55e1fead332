"""LoRA adapters to and from Hugging Face PEFT's format: :func:`export_peft`, :func:`import_peft`.

PEFT's LoRA folder (``adapter_config.json`` + ``adapter_model.safetensors``; read by
:func:`lorakit.peft_format.read_peft`, whose docstring describes it) stores each adapted module's
update as ``ΔW = (lora_alpha / R)·B A`` with ``A`` (R, k) and ``B`` (d, R), the paper's layout.

GPT-2's q,v adapter is exact in this format although PEFT cannot adapt slices of the fused
``c_attn``: it is one rank-2r LoRA on the whole ``c_attn`` whose A stacks ``A_q`` and ``A_v`` and
whose B is the block matrix with ``B_q`` in q's rows, ``B_v`` in v's and zeros in k's
(:mod:`lorakit.serving.factors` shows why ``B A`` is then exactly the q,v update). Its scaling
must stay ``α/r``, so its ``lora_alpha`` is ``2α`` (``α·√2`` with rsLoRA), written in
``alpha_pattern`` beside its rank in ``rank_pattern``. :func:`import_peft` recognises that block
structure (exact zeros) and rebuilds lorakit's q,v layer, so a round trip gives the same layers.

PEFT features beyond plain LoRA are refused on import (see :mod:`lorakit.peft_format`).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from lorakit.lora import LoRAConfig, apply_lora, lora_layers, lora_state_dict
from lorakit.peft_format import (
    GPT2_FUSED,
    PEFT_CONFIG,
    PEFT_WEIGHTS,
    PREFIX,
    PeftFormatError,
    peft_alpha,
    read_peft,
)
from lorakit.serving.factors import Factors, factors_of_layer, module_kind, split_block_B

__all__ = ["PeftFormatError", "export_peft", "import_peft", "read_peft"]


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside ``torch.compile`` (``_orig_mod``) and (Distributed)DataParallel."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def _pattern_key(names: list[str], others: list[str]) -> list[str]:
    """Regex keys (PEFT matches ``(.*\\.)?(key)$``) naming exactly ``names`` among all modules."""
    parts = [n.split(".") for n in names]
    for k in range(1, min(len(p) for p in parts) + 1):
        suffixes = {".".join(p[-k:]) for p in parts}
        if len(suffixes) == 1:
            s = suffixes.pop()
            if not any(o == s or o.endswith("." + s) for o in others):
                return [re.escape(s)]
    return [re.escape(n) for n in names]


def export_peft(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write the LoRA adapter of ``model`` as a PEFT LoRA adapter folder; returns the folder.

    PEFT then loads it onto the same base (``PeftModel.from_pretrained(base, path)``) and gives
    the same outputs. GPT-2's fused q,v layers become rank-``n·r`` LoRAs on ``c_attn`` with zero
    k rows (module docstring). The config keeps lorakit's ``dropout``, ``rslora`` and ``bias``;
    ``init`` is written as PEFT's name for it (``"kaiming"`` is PEFT's default ``true``; lorakit's
    ``"gaussian"`` draws ``N(0, 1/k)``, PEFT's ``N(0, 1/r)``): it matters only to a fresh adapter,
    never to the trained weights in the file. Merged layers export the same A and B. Other files
    in the folder (a lorakit adapter, say) are left alone.

    Raises
    ------
    ValueError
        If the model has no LoRA layers, or ``path`` is a file.
    """
    from safetensors.torch import save as to_bytes

    from lorakit.fileio import atomic_write

    model = _unwrap(model)
    layers = {
        re.sub(r"(^|\.)_orig_mod(?=\.|$)", "", n).lstrip("."): m for n, m in lora_layers(model)
    }
    if not layers:
        raise ValueError(
            "Cannot export: the model has no LoRA layers. Call lorakit.apply_lora "
            "(or lorakit.load_adapter) first."
        )
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"{out} is a file; export_peft writes a folder ({PEFT_CONFIG} + "
            f"{PEFT_WEIGHTS}). Pass the path of a folder."
        )
    cfg = getattr(model, "_lorakit_config", None)
    first = next(iter(layers.values()))
    rslora = cfg.rslora if isinstance(cfg, LoRAConfig) else bool(getattr(first, "rslora", False))
    bias = cfg.bias if isinstance(cfg, LoRAConfig) else "none"
    dropout = (
        cfg.dropout
        if isinstance(cfg, LoRAConfig)
        else getattr(getattr(first, "lora_dropout", None), "p", 0.0)
    )
    init = cfg.init if isinstance(cfg, LoRAConfig) else getattr(first, "init", "gaussian")
    tensors, settings = {}, {}
    for name, layer in layers.items():
        f = factors_of_layer(layer)
        settings[name] = (f.rank, peft_alpha(f.scaling, f.rank, rslora))
        a, b = (
            ("lora_embedding_A", "lora_embedding_B")
            if f.kind == "embedding"
            else ("lora_A.weight", "lora_B.weight")
        )
        tensors[f"{PREFIX}{name}.{a}"] = f.A.contiguous().cpu()
        tensors[f"{PREFIX}{name}.{b}"] = f.B.contiguous().cpu()
    for key, value in lora_state_dict(model, bias).items():
        if key.endswith("bias"):
            key = re.sub(r"\.base\.bias$", ".base_layer.bias", key)
            tensors[PREFIX + key] = value.detach().contiguous().cpu()
    (r, alpha), _ = Counter(settings.values()).most_common(1)[0]
    groups: dict[tuple, list[str]] = {}
    for name, s in settings.items():
        if s != (r, alpha):
            groups.setdefault(s, []).append(name)
    rank_pattern, alpha_pattern = {}, {}
    for (r_m, a_m), names in groups.items():
        for key in _pattern_key(names, [n for n in layers if n not in names]):
            rank_pattern[key], alpha_pattern[key] = r_m, a_m
    kinds = {module_kind(layer.base) for layer in layers.values()}
    name_or_path = getattr(getattr(model, "config", None), "_name_or_path", None) or None
    causal = type(model).__name__.endswith(("LMHeadModel", "ForCausalLM"))
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM" if causal else None,
        "base_model_name_or_path": name_or_path,
        "r": r,
        "lora_alpha": alpha,
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "target_modules": sorted(layers),
        "lora_dropout": float(dropout),
        "fan_in_fan_out": "conv1d" in kinds,
        "bias": bias,
        "use_rslora": rslora,
        "init_lora_weights": True if init == "kaiming" else "gaussian",
        "modules_to_save": None,
        "inference_mode": True,
    }
    data = to_bytes(tensors, metadata={"format": "pt"})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / PEFT_WEIGHTS, lambda tmp: Path(tmp).write_bytes(data))
    text = json.dumps(config, indent=2) + "\n"
    atomic_write(out / PEFT_CONFIG, lambda tmp: Path(tmp).write_text(text))
    return out


def _lorakit_layout(model: nn.Module, factors: dict[str, Factors]) -> dict[str, tuple]:
    """``{name: (r, scaling, enable or None)}``: the lorakit layer each PEFT module becomes.

    GPT-2's ``c_attn`` becomes a q,v (or other slices) layer when every ``c_attn`` of the model
    is adapted with the same block structure, since lorakit's ``q``/``k``/``v`` targets adapt
    them all; otherwise each is a plain rank-R LoRA on the whole ``c_attn`` (equally exact).
    """
    fused_all = [n for n, _ in model.named_modules() if n.endswith(GPT2_FUSED)]
    enables = {factors[n].enable for n in fused_all if n in factors}
    use_fused = (
        bool(fused_all)
        and all(n in factors for n in fused_all)
        and len(enables) == 1
        and None not in enables
    )
    out = {}
    for name, f in factors.items():
        if use_fused and name in fused_all:
            out[name] = (f.rank // sum(f.enable), f.scaling, f.enable)
        else:
            out[name] = (f.rank, f.scaling, None)
    return out


def import_peft(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a PEFT LoRA adapter folder into ``model``, a base without LoRA; returns the model.

    LoRA is applied with the adapter's settings (:func:`lorakit.apply_lora`) and its A and B
    (and biases, with ``bias`` other than ``"none"``) are copied in, so the model computes what
    PEFT computes with the adapter on the same base. Modules, kinds and shapes are all checked
    before the model changes. PEFT's ``Linear`` and ``Conv1D`` targets, and ``Embedding`` ones,
    are read; a GPT-2 ``c_attn`` written by :func:`export_peft` comes back as the q,v layer.

    Raises
    ------
    PeftFormatError
        For a PEFT feature lorakit lacks (the module docstring lists them), modules with
        different ranks or scalings (a lorakit adapter has one of each), or a tensor that does
        not fit the model.
    ValueError
        If ``model`` already has LoRA layers.
    """
    from lorakit.serving.factors import base_shape

    model = _unwrap(model)
    if any(True for _ in lora_layers(model)):
        raise ValueError(
            "The model already has LoRA layers; import a PEFT adapter into a fresh "
            "base (lorakit.load_adapter swaps lorakit adapters)."
        )
    factors, settings = read_peft(path)
    if not factors:
        raise PeftFormatError(f"{Path(path) / PEFT_WEIGHTS} holds no LoRA tensors.")
    for name, f in factors.items():
        try:
            base = model.get_submodule(name)
            kind = module_kind(base)
        except (AttributeError, TypeError):
            raise PeftFormatError(
                f"The adapter adapts {name}, which this model does not have as "
                "a Linear, Conv1D or Embedding: it was made for another base."
            ) from None
        if (kind == "embedding") != (f.kind == "embedding") or base_shape(base) != f.shape:
            raise PeftFormatError(
                f"{name}: the adapter's update is {f.kind} (d, k) = {f.shape}, "
                f"the model's layer is {type(base).__name__} {base_shape(base)}; "
                "it was made for another base."
            )
    layout = _lorakit_layout(model, factors)
    distinct = {(r, round(s, 9)) for r, s, _ in layout.values()}
    if len(distinct) > 1:
        raise PeftFormatError(
            f"The adapter's modules have different (rank, scaling) pairs {sorted(distinct)}; a "
            "lorakit adapter has one r and one alpha for all its layers. Import it per group of "
            "modules, or serve it with lorakit.serving.MultiAdapterModel, which takes any mix."
        )
    r, scaling, _ = next(iter(layout.values()))
    sd = model.state_dict()
    for key, value in settings["biases"].items():
        plain = key.replace(".base.bias", ".bias")
        if plain not in sd or sd[plain].shape != value.shape:
            raise PeftFormatError(f"The adapter's bias {key} does not fit this model.")
    rslora = settings["rslora"]
    alpha = peft_alpha(scaling, r, rslora)
    fused = [n for n, (_, _, en) in layout.items() if en is not None]
    targets = [f"re:{re.escape(n)}" for n in layout if n not in fused]
    if fused:
        targets += [s for s, on in zip("qkv", layout[fused[0]][2]) if on]
    config = LoRAConfig(
        r=r,
        alpha=alpha,
        targets=targets,
        dropout=settings["dropout"],
        init=settings["init"],
        rslora=rslora,
        bias=settings["bias"],
    )
    apply_lora(model, config)
    layers = dict(lora_layers(model))
    with torch.no_grad():
        for name, f in factors.items():
            layer = layers[name]
            layer.lora_A.copy_(f.A.to(layer.lora_A.dtype))
            if layout[name][2] is not None:
                B = split_block_B(f.B, 3)[0]
            else:
                B = f.B
            layer.lora_B.copy_(B.to(layer.lora_B.dtype))
        for key, value in settings["biases"].items():
            target = model.get_parameter(key)
            target.copy_(value.to(target.dtype))
    return model
