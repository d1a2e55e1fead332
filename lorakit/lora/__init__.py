"""LoRA layers and the functions that apply them to a model (paper §4); the fused training path
of the same layers is in :mod:`lorakit.lora.fast`."""

from .apply import (
    ARCH_TARGETS,
    SHORT_NAMES,
    LoRAConfig,
    LoRAReport,
    apply_lora,
    count_parameters,
    lora_factors,
    lora_layers,
    lora_state_dict,
    mark_only_lora_trainable,
    merge_lora,
    resolve_targets,
    unmerge_lora,
)
from .layers import FusedLoRALinear, LoRAEmbedding, LoRALinear, lora_scaling
from .precision import cast_frozen_, frozen_matmul_weights

__all__ = [
    "ARCH_TARGETS", "SHORT_NAMES", "cast_frozen_", "frozen_matmul_weights", "FusedLoRALinear", "LoRAConfig", "LoRAEmbedding", "LoRALinear",
    "LoRAReport", "apply_lora", "count_parameters", "lora_factors", "lora_layers",
    "lora_scaling", "lora_state_dict", "mark_only_lora_trainable", "merge_lora",
    "resolve_targets", "unmerge_lora",
]
