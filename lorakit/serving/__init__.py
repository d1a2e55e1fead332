"""Serving many LoRA adapters on one base, each row of a batch with its own (paper §4.2).

* :class:`MultiAdapterModel`: load N adapters (lorakit or PEFT folders, or trained models) on one
  frozen base; each row of a batch names its adapter or ``None`` for the base; ``forward``,
  ``generate`` and :func:`lorakit.evaluate.generate_texts` work on mixed batches;
* :class:`MultiLoRALinear`, :class:`MultiLoRAEmbedding`: the layers, whose branch for all rows is
  two batched matmuls over factors gathered by each row's adapter index;
* :class:`Factors` and :func:`factors_of_model`: every LoRA update as one plain ``(A, B)`` pair;
* :func:`serving_bytes`: memory of N adapters on one base against N fine-tuned copies.
"""

from .factors import Factors, block_B, factors_of_adapter, factors_of_layer, factors_of_model
from .layers import MultiLoRAEmbedding, MultiLoRALinear, RowRouter
from .memory import serving_bytes
from .model import MultiAdapterModel, read_factors

__all__ = [
    "Factors",
    "MultiAdapterModel",
    "MultiLoRAEmbedding",
    "MultiLoRALinear",
    "RowRouter",
    "block_B",
    "factors_of_adapter",
    "factors_of_layer",
    "factors_of_model",
    "read_factors",
    "serving_bytes",
]
