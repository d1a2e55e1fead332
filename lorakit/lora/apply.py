"""Applying LoRA to a model: freezing, wrapping the targets, merge/unmerge, state dicts, counts.

Which modules are targets is decided by :mod:`lorakit.lora.targets`; the settings are checked by
:mod:`lorakit.lora.settings`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from torch import nn

from .config import LoRAConfig, LoRAReport
from .kinds import linear_dims
from .layers import FusedLoRALinear, LoRAEmbedding, LoRALinear, lora_scaling
from .settings import check_rank, check_settings
from .targets import LORA_TYPES, Slices, adaptable_modules, resolve_targets, summarise


def _weight_holders(model: nn.Module) -> dict[int, list[str]]:
    """``{id(weight): names of the modules that hold it}``: tied weights have several holders."""
    out: dict[int, list[str]] = {}
    for name, mod in model.named_modules():
        w = mod._parameters.get("weight") if hasattr(mod, "_parameters") else None
        if w is not None:
            out.setdefault(id(w), []).append(name)
    return out


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _check_same_settings(model: nn.Module, config: LoRAConfig) -> LoRAConfig | None:
    """The model's earlier config, if it has LoRA; raise if ``config`` has other settings."""
    existing = list(lora_layers(model))
    if not existing:
        return None
    prev = getattr(model, "_lorakit_config", None)
    if isinstance(prev, LoRAConfig):
        same = prev.settings() == config.settings()
        have = (
            f"r={prev.r}, alpha={prev.alpha or prev.r:g}, dropout={prev.dropout:g}, "
            f"bias={prev.bias!r}"
        )
    else:  # layers built by hand
        first = existing[0][1]
        same = (
            first.r == config.r
            and abs(first.scaling - lora_scaling(config.alpha or config.r, config.r, config.rslora))
            <= 1e-9 * first.scaling
        )
        have = f"r={first.r}, scaling={first.scaling:g}"
    if not same:
        raise ValueError(
            f"This model already has LoRA with other settings ({have}) on "
            f"{summarise([n for n, _ in existing])}; one adapter has one setting for all its "
            "layers, so save_adapter could not describe both. Apply LoRA once with all the "
            "targets, or again with the same r, alpha, dropout, init, rslora and bias, or start "
            "from a fresh base."
        )
    return prev


# PyTorch modules that read their sub-layers' ``.weight`` directly instead of calling them
# (F.multi_head_attention_forward, the encoder's fused fast path): a LoRA wrapper inside them
# would break every forward.
_READ_WEIGHTS_DIRECTLY = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerEncoder)


def _check_called_as_module(model: nn.Module, name: str) -> None:
    """Refuse a module that an enclosing PyTorch module uses through its weight, not its forward."""
    parts = name.split(".")
    for i in range(len(parts) - 1, -1, -1):
        owner = model.get_submodule(".".join(parts[:i])) if i else model
        if isinstance(owner, _READ_WEIGHTS_DIRECTLY):
            raise ValueError(
                f"{name} is inside {type(owner).__name__}, which reads its layers' .weight "
                "directly (F.multi_head_attention_forward, the encoder's fused fast path) instead "
                "of calling them, so a LoRA wrapper would break every forward. Adapt a model whose "
                "attention "
                "calls its projections as modules (GPT-2, BERT, LLaMA...), or target other layers."
            )


def apply_lora(model: nn.Module, config: LoRAConfig) -> LoRAReport:
    """Wrap the target modules of ``model`` with LoRA in place and freeze everything else.

    Every target is resolved and checked (type, rank, not already adapted, a parent that calls
    it as a module) before anything is changed, so a bad config leaves the model exactly as it
    was. A model that already has LoRA takes more targets only with the same settings (one
    adapter, one setting).

    Parameters
    ----------
    model : nn.Module
        Any model; GPT-2, BERT and LLaMA-style models also take short target names.
    config : LoRAConfig
        The rank, scaling, targets, dropout, initialisation and trainable biases.

    Returns
    -------
    LoRAReport
        The adapted modules (fused ones as ``name[q,v]``), their ``(d, k)`` and the counts.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"apply_lora needs a torch.nn.Module, got {type(model).__name__}; pass the "
            "model itself, e.g. apply_lora(model, LoRAConfig(r=4, targets=['q', 'v']))."
        )
    if not isinstance(config, LoRAConfig):
        raise TypeError(
            f"apply_lora needs a lorakit.LoRAConfig, got {type(config).__name__}; write "
            "apply_lora(model, LoRAConfig(r=4, alpha=32, targets=['q', 'v']))."
        )
    _check_same_settings(model, config)
    return apply_lora_to(model, config, resolve_targets(model, config.targets))


def apply_lora_to(
    model: nn.Module, config: LoRAConfig, targets: dict[str, Slices | None]
) -> LoRAReport:
    """:func:`apply_lora` on targets already resolved: ``{module name: Slices or None}``.

    This is how :func:`lorakit.load_adapter` rebuilds the layers an adapter file lists;
    ``config.targets`` is then only recorded. The same checks run before anything changes.
    """
    prev = _check_same_settings(model, config)
    modules = adaptable_modules(model)
    holders = _weight_holders(model)
    plan = []
    for name, mask in targets.items():
        mod = modules[name]
        if isinstance(mod, LORA_TYPES):
            raise ValueError(
                f"{name} already has LoRA. Apply LoRA once per model: load a fresh base, "
                "or use lorakit.load_adapter to swap adapters."
            )
        _check_called_as_module(model, name)
        others = [h for h in holders.get(id(getattr(mod, "weight", None)), []) if h != name]
        if others:
            raise ValueError(
                f"{name}.weight is tied to {', '.join(o + '.weight' for o in others)} (e.g. "
                "GPT-2's token embedding and LM head): merging ΔW into it would change both "
                "modules. Target another module, or untie the weights first."
            )
        if isinstance(mod, nn.Embedding):
            check_rank(config.r, mod.embedding_dim, mod.num_embeddings, name)
        else:
            k, d, _ = linear_dims(mod)
            check_rank(config.r, d // (len(mask.enable) if mask else 1), k, name)
        plan.append((name, mod, mask))
    kw = dict(r=config.r, alpha=config.alpha, init=config.init, rslora=config.rslora)
    for p in model.parameters():
        p.requires_grad_(False)
    report_names, shapes = [], {}
    for name, mod, mask in plan:
        shown = name if mask is None else f"{name}[{','.join(mask.enabled())}]"
        if isinstance(mod, nn.Embedding):
            new = LoRAEmbedding(mod, **kw)
            shapes[shown] = (mod.embedding_dim, mod.num_embeddings)
        elif mask is not None:
            new = FusedLoRALinear(
                mod, dropout=config.dropout, enable=mask.enable, slice_names=mask.names, **kw
            )
            shapes[shown] = (new.d_slice, new.in_features)
        else:
            new = LoRALinear(mod, dropout=config.dropout, **kw)
            shapes[shown] = (new.out_features, new.in_features)
        new.train(mod.training)  # keep the model's train/eval mode (LoRA dropout)
        _set_module(model, name, new)
        report_names.append(shown)
    mark_only_lora_trainable(model, config.bias)
    if prev is not None:  # same settings, more targets
        config = replace(prev, targets=list(dict.fromkeys(prev.targets + config.targets)))
    model._lorakit_config = config  # remembered by save_adapter
    trainable, total = count_parameters(model)
    return LoRAReport(report_names, shapes, trainable, total, config)


def lora_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(name, layer)`` for every LoRA layer of ``model``."""
    for name, mod in model.named_modules():
        if isinstance(mod, LORA_TYPES):
            yield name, mod


def _require_lora(model: nn.Module, what: str) -> list[tuple[str, nn.Module]]:
    layers = list(lora_layers(model))
    if not layers:
        raise ValueError(
            f"Cannot {what}: the model has no LoRA layers. Call "
            "lorakit.apply_lora(model, config) (or lorakit.load_adapter) first."
        )
    return layers


def merge_lora(model: nn.Module) -> None:
    """Fold every LoRA update into its base weight (idempotent).

    Every layer is checked first: if one would overflow its dtype, ``ValueError`` names it and
    no layer is merged.
    """
    layers = _require_lora(model, "merge LoRA")
    for name, layer in layers:
        try:
            layer.check_merge()
        except ValueError as e:
            raise ValueError(f"{name}: {e} No layer of the model was merged.") from None
    for _, layer in layers:
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    """Take every LoRA update back out of its base weight (idempotent)."""
    for _, layer in _require_lora(model, "unmerge LoRA"):
        layer.unmerge()


def mark_only_lora_trainable(model: nn.Module, bias: str = "none") -> None:
    """Freeze all but A and B; ``bias``: "none", "all" biases, or "lora_only" (those of the
    adapted layers)."""
    check_settings(bias=bias)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    if bias == "all":
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.requires_grad_(True)
    elif bias == "lora_only":
        for _, layer in lora_layers(model):
            b = getattr(layer.base, "bias", None)
            if b is not None:
                b.requires_grad_(True)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts (shared tensors counted once)."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def lora_state_dict(model: nn.Module, bias: str = "none") -> dict:
    """The LoRA tensors (``*lora_A``, ``*lora_B``), plus biases per ``bias`` as in training."""
    sd = model.state_dict()
    keys = {k for k in sd if "lora_" in k}
    if bias == "all":
        keys |= {k for k in sd if k.endswith("bias")}
    elif bias == "lora_only":
        keys |= {
            f"{n}.base.bias"
            for n, layer in lora_layers(model)
            if getattr(layer.base, "bias", None) is not None
        }
    return {k: sd[k] for k in sorted(keys)}


def lora_factors(model: nn.Module) -> dict:
    """``{name: (A (r, k), B (d, r))}`` for every adapted matrix; fused slices: ``name.q`` etc."""
    out = {}
    for name, layer in lora_layers(model):
        if isinstance(layer, FusedLoRALinear):
            for s, ab in layer.factors().items():
                out[f"{name}.{s}"] = ab
        else:
            out[name] = (layer.lora_A, layer.lora_B)
    return out
