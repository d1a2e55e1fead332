"""lorakit: LoRA (Hu et al. 2021, arXiv 2106.09685) from rank to GPT-2, small and readable.

Quick start::

    import lorakit
    cfg = lorakit.LoRAConfig(r=4, alpha=32, targets=["q", "v"], dropout=0.1)
    report = lorakit.apply_lora(model, cfg)   # in place; freezes the base
    trainable, total = lorakit.count_parameters(model)
    lorakit.save_adapter(model, "my_adapter/")
"""

__version__ = "0.1.0"

from . import presets
from .checkpoint import AdapterError, load_adapter, read_adapter, save_adapter
from .lora import (
    FusedLoRALinear,
    LoRAConfig,
    LoRAEmbedding,
    LoRALinear,
    LoRAReport,
    apply_lora,
    cast_frozen_,
    count_parameters,
    lora_factors,
    lora_layers,
    lora_state_dict,
    mark_only_lora_trainable,
    merge_lora,
    unmerge_lora,
)

__all__ = [
    "AdapterError", "FusedLoRALinear", "LoRAConfig", "LoRAEmbedding", "LoRALinear", "LoRAReport",
    "__version__", "apply_lora", "cast_frozen_", "count_parameters", "load_adapter", "lora_factors", "lora_layers",
    "lora_state_dict", "mark_only_lora_trainable", "merge_lora", "presets", "read_adapter",
    "save_adapter", "unmerge_lora",
]
