"""lorakit: LoRA (Hu et al. 2021, arXiv 2106.09685) from rank to GPT-2, small and readable.

Quick start::

    import lorakit
    cfg = lorakit.LoRAConfig(r=4, alpha=32, targets=["q", "v"], dropout=0.1)
    report = lorakit.apply_lora(model, cfg)   # in place; freezes the base
    trainable, total = lorakit.count_parameters(model)
    lorakit.save_adapter(model, "my_adapter/")

The package has three layers; each imports only from the layers below it:

* the LoRA core, which needs only torch, numpy and safetensors (``pip install lorakit``):
  :mod:`lorakit.lora` (layers, ``apply_lora``, merge; the fused path in :mod:`lorakit.lora.fast`),
  :mod:`lorakit.checkpoint` (adapters on disk), :mod:`lorakit.train` (one training loop),
  :mod:`lorakit.fileio`, :mod:`lorakit.presets`;
* the paper's reproduction, with transformers (``pip install "lorakit[hf]"``):
  :mod:`lorakit.models` (the base GPT-2), :mod:`lorakit.data` (the E2E task),
  :mod:`lorakit.baselines`, :mod:`lorakit.evaluate`, :mod:`lorakit.analysis`,
  :mod:`lorakit.experiments`, :mod:`lorakit.bench`;
* the course machinery: :mod:`lorakit.exercises` (checks, student versions, grading),
  :mod:`lorakit.runs` (recorded GPU runs).

``docs/architecture.md`` in the repository draws the map. ``import lorakit`` loads the core only.
"""

from . import presets
from ._version import __version__
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
from .peft_io import export_peft, import_peft
from .serving import MultiAdapterModel

__all__ = [
    "AdapterError",
    "FusedLoRALinear",
    "LoRAConfig",
    "LoRAEmbedding",
    "LoRALinear",
    "LoRAReport",
    "MultiAdapterModel",
    "__version__",
    "apply_lora",
    "cast_frozen_",
    "count_parameters",
    "export_peft",
    "import_peft",
    "load_adapter",
    "lora_factors",
    "lora_layers",
    "lora_state_dict",
    "mark_only_lora_trainable",
    "merge_lora",
    "presets",
    "read_adapter",
    "save_adapter",
    "unmerge_lora",
]
