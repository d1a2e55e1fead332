"""The optimizer's parameter groups and the learning-rate schedule of
:func:`lorakit.train.train`.
"""

from __future__ import annotations

from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """The optimizer's parameter groups: the trainable matrices with ``weight_decay``, the
    trainable biases and LayerNorm parameters (1-D) without (AdamW's usual split)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            # matrices get weight decay; biases and LayerNorm gains/shifts (1-D) do not
            (decay if p.ndim >= 2 else no_decay).append(p)
    if not decay and not no_decay:
        raise ValueError(
            "The model has no parameter with requires_grad=True, so there is "
            "nothing to train; apply a method first (e.g. lorakit.apply_lora)."
        )
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def linear_warmup_decay(warmup_steps: int, total_steps: int):
    """LR multiplier: 0 -> 1 linearly over ``warmup_steps``, then 1 -> 0 linearly at
    ``total_steps``.
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor
