"""Which modules LoRA adapts: short names per architecture, name suffixes, regular expressions.

Targets are short names for known architectures (``q k v o mlp_in mlp_out``; GPT-2, BERT and
LLaMA-style models have tables here) or, for any model, module-name suffixes
(``"attention.self.query"``) or regular expressions (``"re:.*\\.mlp\\.c_fc"``).

An architecture may compute several projections in one fused layer (GPT-2's ``attn.c_attn``
computes q, k and v at once). Its table names that layer and its slices; a short name that is a
slice adapts that slice alone (:class:`Slices`), as loralib's ``MergedLinear`` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from .kinds import is_conv1d
from .layers import LoRAEmbedding, LoRALinear

LORA_TYPES = (LoRALinear, LoRAEmbedding)
SHORT_NAMES = ("q", "k", "v", "o", "mlp_in", "mlp_out")

# Short names -> module-name suffixes, per architecture.
ARCH_TARGETS: dict[str, dict[str, str]] = {
    "gpt2": {"o": "attn.c_proj", "mlp_in": "mlp.c_fc", "mlp_out": "mlp.c_proj"},
    "bert": {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "o": "attention.output.dense",
        "mlp_in": "intermediate.dense",
        "mlp_out": "output.dense",
    },
    "llama": {
        "q": "self_attn.q_proj",
        "k": "self_attn.k_proj",
        "v": "self_attn.v_proj",
        "o": "self_attn.o_proj",
        "mlp_in": "mlp.up_proj",
        "mlp_out": "mlp.down_proj",
    },
}
# Fused projections: architecture -> (module-name suffix, the names of its equal output slices).
FUSED: dict[str, tuple[str, tuple[str, ...]]] = {
    "gpt2": ("attn.c_attn", ("q", "k", "v")),
}


@dataclass(frozen=True)
class Slices:
    """The slices of a fused projection and which of them get LoRA.

    ``names`` are the slices in output order (GPT-2's ``c_attn``: ``("q", "k", "v")``);
    ``enable[i]`` says whether slice ``i`` is adapted (the paper's setting: q and v).
    """

    names: tuple[str, ...]
    enable: tuple[bool, ...]

    def enabled(self) -> list[str]:
        """The names of the adapted slices."""
        return [n for n, on in zip(self.names, self.enable) if on]


def architecture(model: nn.Module) -> str | None:
    """The short-name table that applies to ``model`` ("gpt2", "bert", "llama") or None."""
    names = [n for n, _ in model.named_modules()]
    for arch, table in ARCH_TARGETS.items():
        marker = FUSED[arch][0] if arch in FUSED else table["q"]
        if any(n.endswith(marker) for n in names):
            return arch
    return None


def adaptable_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Modules LoRA may wrap (Linear, Conv1D, Embedding) and LoRA layers, not those inside them."""
    out, inside = {}, set()
    for name, mod in model.named_modules():
        if any(name.startswith(p + ".") for p in inside):
            continue
        if isinstance(mod, LORA_TYPES):
            inside.add(name)
            out[name] = mod
        elif isinstance(mod, (nn.Linear, nn.Embedding)) or is_conv1d(mod):
            out[name] = mod
    return out


def summarise(names: list[str], limit: int = 12) -> str:
    """Module names with layer numbers folded: ``transformer.h.{0..11}.attn.c_attn``."""
    pattern = re.compile(r"\.(\d+)\.")
    groups: dict[str, list[int]] = {}
    for n in names:
        key = pattern.sub(".{i}.", n, count=1)
        m = pattern.search(n)
        groups.setdefault(key, []).append(int(m.group(1)) if m else -1)
    shown = []
    for key, idx in groups.items():
        idx = sorted(i for i in idx if i >= 0)
        shown.append(key.replace("{i}", f"{{{idx[0]}..{idx[-1]}}}") if idx else key)
    more = f" ... (+{len(shown) - limit} more)" if len(shown) > limit else ""
    return ", ".join(shown[:limit]) + more


def resolve_targets(model: nn.Module, targets: list[str]) -> dict[str, Slices | None]:
    """Map targets to ``{module name: Slices of a fused projection, or None}``.

    Raises
    ------
    ValueError
        If a target matches no module (the message lists the adaptable ones), or a short name
        is used on an architecture without a table.
    """
    modules = adaptable_modules(model)
    arch = architecture(model)
    fused_suffix, slice_names = FUSED.get(arch, ("", ()))
    found: dict[str, Slices | None] = {}
    slices_on: set[str] = set()
    for t in targets:
        if t in slice_names:
            slices_on.add(t)
            continue
        if t in SHORT_NAMES:
            if arch is None:
                raise ValueError(
                    f"Target {t!r} is a short name, but this model's architecture is not one "
                    f"lorakit knows ({', '.join(ARCH_TARGETS)}). Use module names instead; "
                    f"adaptable modules are: {summarise(list(modules))}."
                )
            t = ARCH_TARGETS[arch][t]
        if t.startswith("re:"):
            rx = re.compile(t[3:])
            hits = [n for n in modules if rx.fullmatch(n)]
        else:
            hits = [n for n in modules if n == t or n.endswith("." + t)]
        if not hits:
            raise ValueError(
                f"LoRA target {t!r} matches no module. Adaptable modules (Linear/Conv1D/Embedding) "
                f"are: {summarise(list(modules))}. Use a short name ({' '.join(SHORT_NAMES)}) "
                "for GPT-2/BERT/LLaMA, a name suffix, or 're:<regex>'."
            )
        for n in hits:
            found[n] = None
    if slices_on:
        mask = Slices(slice_names, tuple(s in slices_on for s in slice_names))
        for n in modules:
            if n.endswith(fused_suffix):
                found[n] = mask
    return found
