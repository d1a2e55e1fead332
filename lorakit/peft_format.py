"""Reading Hugging Face PEFT's LoRA adapter folders: :func:`read_peft`.

A PEFT LoRA adapter is a folder with ``adapter_config.json`` (``peft_type: "LORA"``, ``r``,
``lora_alpha``, ``target_modules``, per-module ``rank_pattern``/``alpha_pattern``, ...) and
``adapter_model.safetensors`` holding, for each adapted module ``M`` of the base model,
``base_model.model.M.lora_A.weight`` (R, k) and ``base_model.model.M.lora_B.weight`` (d, R), or
``lora_embedding_A`` (R, V) / ``lora_embedding_B`` (d, R) for an embedding, with
``ΔW = (lora_alpha / R)·B A`` (``/√R`` with ``use_rslora``): the paper's layout, as lorakit's.
A module's ``lora_alpha`` is the value of the first key of ``alpha_pattern`` that matches the end
of its name as a regular expression, else the global one.

What PEFT adds beyond plain LoRA (DoRA, biases on B, extra trained modules, trainable tokens,
initialisations that rewrite the base weights such as PiSSA or OLoRA, ...) has no lorakit
equivalent: :func:`read_peft` refuses it, naming the field, rather than read something else.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import torch

from lorakit.serving.factors import Factors, split_block_B

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PREFIX = "base_model.model."
GPT2_FUSED = "attn.c_attn"
# fields of a PEFT LoRA config that only say how targets were found, or are bookkeeping: the
# weights file says what is adapted, so these need no equivalent
_NO_EFFECT = {
    "peft_type",
    "auto_mapping",
    "base_model_name_or_path",
    "revision",
    "task_type",
    "inference_mode",
    "peft_version",
    "target_modules",
    "exclude_modules",
    "layers_to_transform",
    "layers_pattern",
    "megatron_core",
    "qalora_group_size",
    "ensure_weight_tying",
    "rank_pattern",
    "fan_in_fan_out",
    "r",
}
_USED = {"lora_alpha", "alpha_pattern", "lora_dropout", "use_rslora", "bias", "init_lora_weights"}
# initialisations that only shape a fresh adapter (the file holds trained weights)
_FRESH_INITS = (True, False, "gaussian", "eva", "orthogonal")


class PeftFormatError(ValueError):
    """A PEFT adapter that lorakit cannot represent exactly, or a folder that is not one."""


def peft_alpha(scaling: float, rank: int, rslora: bool) -> float:
    """PEFT's ``lora_alpha`` that gives ``scaling`` at ``rank``; an integer when it is one."""
    alpha = scaling * (math.sqrt(rank) if rslora else rank)
    return int(round(alpha)) if abs(alpha - round(alpha)) < 1e-9 * max(1.0, alpha) else alpha


def _peft_pattern(patterns: dict, name: str):
    """The value of the first key of a PEFT pattern dict matching module ``name``, or None."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return None


def read_peft(path: str | os.PathLike) -> tuple[dict[str, Factors], dict]:
    """Read a PEFT LoRA folder: ``({module name: Factors}, settings)``.

    ``settings`` holds ``dropout``, ``rslora``, ``bias``, ``init`` (lorakit's names) and
    ``biases`` (``{lorakit key: tensor}`` of the trained biases, if any). GPT-2 ``c_attn``
    updates with lorakit's block structure come back with their slices in ``Factors.enable``.

    Raises
    ------
    PeftFormatError
        For a folder that is not a PEFT LoRA adapter, or one using a feature lorakit lacks.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(path)
    cfg_path, w_path = folder / PEFT_CONFIG, folder / PEFT_WEIGHTS
    if not cfg_path.is_file():
        raise FileNotFoundError(
            f"{cfg_path} does not exist: a PEFT adapter folder holds "
            f"{PEFT_CONFIG} and {PEFT_WEIGHTS}."
        )
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PeftFormatError(f"{cfg_path} is not valid JSON ({e}).") from e
    if not isinstance(cfg, dict) or cfg.get("peft_type") != "LORA":
        kind = cfg.get("peft_type") if isinstance(cfg, dict) else None
        raise PeftFormatError(
            f"{cfg_path} is not a PEFT LoRA adapter (peft_type={kind!r}); "
            "lorakit imports LoRA adapters only."
        )
    for key, value in cfg.items():
        if key in _NO_EFFECT or key in _USED or value in (None, False, {}, [], ""):
            continue
        raise PeftFormatError(
            f"{cfg_path}: {key}={value!r} is a PEFT feature lorakit does not "
            "have, so the adapter cannot be loaded exactly; export it from PEFT "
            f"without {key}."
        )
    init = cfg.get("init_lora_weights", True)
    if init not in _FRESH_INITS:
        raise PeftFormatError(
            f"{cfg_path}: init_lora_weights={init!r} rewrites the base model's "
            "weights, so this adapter only fits that modified base. Convert it to "
            "a plain LoRA in PEFT first (save_pretrained with "
            "path_initial_model_for_weight_conversion)."
        )
    if cfg.get("bias", "none") not in ("none", "all", "lora_only"):
        raise PeftFormatError(f"{cfg_path}: bias={cfg.get('bias')!r} is not a known PEFT mode.")
    if not w_path.is_file():
        found = (
            "adapter_model.bin (a pickle, which lorakit does not read)"
            if (folder / "adapter_model.bin").is_file()
            else "no weights"
        )
        raise FileNotFoundError(
            f"{w_path} does not exist ({found}); save the adapter with "
            "PEFT's save_pretrained(safe_serialization=True)."
        )
    try:
        raw = load_file(str(w_path))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise PeftFormatError(f"{w_path} cannot be read as safetensors ({e}).") from e
    rslora = bool(cfg.get("use_rslora", False))
    parts: dict[str, dict[str, torch.Tensor]] = {}
    biases = {}
    for key, value in raw.items():
        name = key[len(PREFIX) :] if key.startswith(PREFIX) else key
        m = re.fullmatch(
            r"(.+)\.(lora_A\.weight|lora_B\.weight|lora_embedding_A|lora_embedding_B)", name
        )
        if m:
            parts.setdefault(m.group(1), {})[m.group(2)] = value
        elif name.endswith("bias") and cfg.get("bias", "none") != "none":
            biases[re.sub(r"\.base_layer\.bias$", ".base.bias", name)] = value
        else:
            raise PeftFormatError(
                f"{w_path} holds {key!r}, which is not a plain LoRA tensor "
                "(DoRA magnitudes, extra trained modules, ...): lorakit cannot "
                "represent it."
            )
    factors = {}
    for name, p in parts.items():
        emb = "lora_embedding_A" in p or "lora_embedding_B" in p
        a, b = (
            ("lora_embedding_A", "lora_embedding_B") if emb else ("lora_A.weight", "lora_B.weight")
        )
        if set(p) != {a, b} or p[a].dim() != 2 or p[b].dim() != 2 or p[a].shape[0] != p[b].shape[1]:
            raise PeftFormatError(
                f"{w_path}: {name} does not hold one A (R, k) and one B (d, R) "
                f"(found {{{', '.join(f'{k}: {tuple(v.shape)}' for k, v in p.items())}}})."
            )
        R = p[a].shape[0]
        alpha = _peft_pattern(cfg.get("alpha_pattern") or {}, name)
        alpha = cfg.get("lora_alpha", 8) if alpha is None else alpha
        scaling = alpha / math.sqrt(R) if rslora else alpha / R
        factors[name] = Factors("embedding" if emb else "linear", p[a], p[b], scaling)
        if not emb and name.endswith(GPT2_FUSED):
            split = split_block_B(p[b], 3)
            if split is not None:
                factors[name].enable = split[1]
    settings = {
        "dropout": float(cfg.get("lora_dropout", 0.0)),
        "rslora": rslora,
        "bias": cfg.get("bias", "none"),
        "init": "kaiming" if init is True else "gaussian",
        "biases": biases,
    }
    return factors, settings
