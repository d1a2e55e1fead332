"""The layers LoRA can wrap, recognised in one place.

* ``nn.Linear``: weight stored (out, in) = (d, k), the paper's layout;
* transformers' ``Conv1D`` (GPT-2's projections): the same linear map with its weight stored
  transposed, (in, out) = (k, d). loralib and PEFT call a layer stored that way
  ``fan_in_fan_out``, and so does lorakit;
* ``nn.Embedding``: a lookup table (V, d), adapted by :class:`lorakit.LoRAEmbedding`.

``Conv1D`` is recognised by its class name and its ``nf`` attribute (the output size), so that
transformers is never imported here: the LoRA core needs only torch.
"""

from __future__ import annotations

from torch import nn


def is_conv1d(module: nn.Module) -> bool:
    """Whether ``module`` is transformers' ``Conv1D`` (a linear layer stored (in, out))."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def is_linear(module: nn.Module) -> bool:
    """Whether ``module`` is a linear layer LoRA wraps: ``nn.Linear`` (or subclass), ``Conv1D``."""
    return isinstance(module, nn.Linear) or is_conv1d(module)


def linear_dims(module: nn.Module) -> tuple[int, int, bool]:
    """``(in_features, out_features, fan_in_fan_out)`` of an ``nn.Linear`` or ``Conv1D``.

    ``fan_in_fan_out`` is ``True`` when the weight is stored (in, out), as ``Conv1D`` stores it.

    Raises
    ------
    TypeError
        For any other module.
    """
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features, False
    if is_conv1d(module):
        k, d = module.weight.shape
        return k, d, True
    raise TypeError(
        f"LoRA can wrap nn.Linear or transformers' Conv1D, not {type(module).__name__}; "
        "target a linear projection instead."
    )
