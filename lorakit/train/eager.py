"""Training steps in plain eager PyTorch: :class:`EagerSteps`.

:func:`lorakit.train.train` uses them off a GPU, under ``torch.compile``, under DDP/FSDP, and
where a batch does not suit the CUDA graphs of :mod:`lorakit.train.graphed`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .graphed import bucket_length, pad_length, why_not_static
from .step import _prepare


class EagerSteps:
    """Forward + backward of a micro-batch and the optimizer step, in plain eager PyTorch.

    The same interface as :class:`lorakit.train.graphed.StaticSteps`, which replays them as CUDA
    graphs. The loss is summed on the device and read only when a history row is logged.
    """

    def __init__(
        self,
        params: list[nn.Parameter],
        optimizer: torch.optim.Optimizer,
        loss_fn,
        grad_accum: int,
        grad_clip: float | None,
        device: torch.device,
        max_positions: int | None = None,
        pad_lengths: bool = False,
    ) -> None:
        self.params, self.opt, self.loss_fn = params, optimizer, loss_fn
        self.grad_accum, self.grad_clip, self.device = grad_accum, grad_clip, device
        self.max_positions, self.pad_lengths = max_positions, pad_lengths
        self.loss_sum = torch.zeros((), device=device)

    def micro(self, batch: Mapping[str, torch.Tensor]) -> int:
        """Forward + backward of one CPU batch; returns its number of tokens.

        With ``pad_lengths`` (under ``torch.compile``) a right-padded batch is first widened to
        :func:`~lorakit.train.graphed.bucket_length`, so that the compiler sees few shapes.
        """
        if self.pad_lengths and why_not_static(batch) is None:
            batch = pad_length(
                batch, bucket_length(batch["input_ids"].shape[1], self.max_positions)
            )
        moved, positions, ntok = _prepare(batch, self.device)
        loss, _ = self.loss_fn(moved, positions)
        (loss / self.grad_accum).backward()
        self.loss_sum += loss.detach()
        return ntok

    def step(self) -> None:
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def read_loss(self) -> float:
        value = float(self.loss_sum)  # float() syncs, once per logged window
        self.loss_sum = torch.zeros((), device=self.device)
        return value
