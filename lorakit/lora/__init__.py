"""LoRA layers and the functions that apply them to a model (paper §4).

Modules, from the bottom up: :mod:`.kinds` (the layers LoRA wraps), :mod:`.settings` (the
settings and their checks), :mod:`.layers` (``LoRALinear``, ``FusedLoRALinear``,
``LoRAEmbedding``), :mod:`.config` (``LoRAConfig``, ``LoRAReport``), :mod:`.targets` (which
modules a config adapts), :mod:`.apply` (``apply_lora``, merge, state dicts, counts) and
:mod:`.precision` (``cast_frozen_``). The fused training path of the same layers is in
:mod:`lorakit.lora.fast`.
"""

from .apply import (
    apply_lora,
    count_parameters,
    lora_factors,
    lora_layers,
    lora_state_dict,
    mark_only_lora_trainable,
    merge_lora,
    unmerge_lora,
)
from .config import LoRAConfig, LoRAReport
from .layers import FusedLoRALinear, LoRAEmbedding, LoRALinear
from .precision import cast_frozen_

__all__ = [
    "FusedLoRALinear",
    "LoRAConfig",
    "LoRAEmbedding",
    "LoRALinear",
    "LoRAReport",
    "apply_lora",
    "cast_frozen_",
    "count_parameters",
    "lora_factors",
    "lora_layers",
    "lora_state_dict",
    "mark_only_lora_trainable",
    "merge_lora",
    "unmerge_lora",
]
