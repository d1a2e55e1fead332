"""The pieces of one training step that the eager, graphed and distributed paths share.

* :func:`_check_batch` -- a batch has ``input_ids`` and ``labels``;
* :func:`_prepare` -- the host-side work on a CPU batch (label positions, token count), then the
  move to the device;
* :func:`_autocast` -- bf16 autocast on the step's device, or none;
* :class:`_Forward` -- the module DDP and FSDP wrap, whose forward is the whole loss.

They sit below :mod:`lorakit.train.loop`, :mod:`lorakit.train.graphed`,
:mod:`lorakit.train.distributed` and :mod:`lorakit.train.dist_io`, which all import them, so
that the imports between those modules run one way.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .loss import LabelPositions, label_positions


def _check_batch(batch: Mapping[str, torch.Tensor]) -> None:
    for key in ("input_ids", "labels"):
        if key not in batch:
            raise KeyError(
                f"A training batch needs {key!r}; it has {sorted(batch)}. Build batches "
                "with lorakit.data (or as dicts of input_ids, attention_mask, labels)."
            )


def _prepare(
    batch: Mapping[str, torch.Tensor], device: torch.device
) -> tuple[dict[str, torch.Tensor], LabelPositions, int]:
    """Move a batch to ``device`` after the host-side work: label positions and the token count.

    Both are read from the CPU tensors, so the step never waits for the GPU. An all-ones
    attention mask is dropped: it says nothing, and passing it can route SDPA attention to a
    slower masked kernel (and makes transformers check it on the device).
    """
    _check_batch(batch)
    positions = label_positions(batch["labels"])
    mask = batch.get("attention_mask")
    ntok = int(mask.sum()) if mask is not None else batch["input_ids"].numel()
    skip = {"attention_mask"} if mask is not None and bool(mask.all()) else set()
    moved = {
        k: v.to(device, non_blocking=True)
        for k, v in batch.items()
        if torch.is_tensor(v) and k not in skip
    }
    return moved, positions.to(device), ntok


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)


class _Forward(nn.Module):
    """Runs ``fn(*args)`` as its forward, so DDP's and FSDP's hooks run around the whole loss.

    The loss reaches into the model (backbone, then the LM head's weight on the labelled rows
    only); DDP and FSDP act only on a module that is *called*, so they wrap this one.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn, *args):
        return fn(*args)
