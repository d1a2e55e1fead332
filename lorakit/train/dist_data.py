"""Each rank's rows of the same global batches: :class:`ShardedBatches` (the distributed sampler).

Under :mod:`lorakit.train.distributed` every rank builds the same global batches (same seed) and
takes its own rows of each. A rank's mean loss is then weighted by its share of the batch's
label tokens (:attr:`Shard.loss_weight`), so that the gradient averaged over ranks is the one
of the whole global batch, however unevenly the label tokens fall.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import torch
import torch.distributed as dist

from .loss import IGNORE_INDEX


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class Shard(dict):
    """One rank's rows of a global batch (a dict of CPU tensors), plus two facts of the whole batch.

    Attributes
    ----------
    loss_weight : ``n_rank · world_size / n_global``, this rank's label tokens over the mean per
        rank; the rank's mean loss times this, averaged over ranks, is the global batch's mean.
    global_tokens : tokens of the whole global batch (for tokens/s).
    """

    loss_weight: float = 1.0
    global_tokens: int = 0


def shard_batch(batch: Mapping[str, torch.Tensor], rank: int, world_size: int) -> Shard:
    """Rows ``rank``-th of ``world_size`` nearly equal parts of ``batch`` (B, T), as a
    :class:`Shard`.

    Trailing columns that are padding in every row of the part (attention 0, no label) are cut,
    so a rank does not run the padding of another rank's longer rows.
    """
    rows = batch["input_ids"].shape[0]
    if rows < world_size:
        raise ValueError(
            f"A batch of {rows} row(s) cannot be split over {world_size} ranks; every "
            "global batch needs at least world_size rows (drop or merge a short "
            "last batch)."
        )
    idx = torch.tensor_split(torch.arange(rows), world_size)[rank]
    lo, hi = int(idx[0]), int(idx[-1]) + 1
    part = {
        k: v[lo:hi] if torch.is_tensor(v) and v.ndim and v.shape[0] == rows else v
        for k, v in batch.items()
    }
    mask, labels = part.get("attention_mask"), part.get("labels")
    if mask is not None and labels is not None and mask.ndim == 2:
        used = mask.any(0).nonzero()
        width = int(used.max()) + 1 if used.numel() else mask.shape[1]
        T = mask.shape[1]
        if width < T and bool((labels[:, width:] == IGNORE_INDEX).all()):
            part = {
                k: v[:, :width] if torch.is_tensor(v) and v.ndim == 2 and v.shape[1] == T else v
                for k, v in part.items()
            }
    out = Shard(part)
    if "labels" in batch:
        n_all = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        n_own = int((part["labels"][:, 1:] != IGNORE_INDEX).sum())
        out.loss_weight = n_own * world_size / n_all if n_all else 1.0
    full_mask = batch.get("attention_mask")
    out.global_tokens = (
        int(full_mask.sum()) if full_mask is not None else batch["input_ids"].numel()
    )
    return out


class ShardedBatches:
    """Each rank's rows of the same global batches: what a distributed sampler does, batch by batch.

    Parameters
    ----------
    batches : re-iterable of global batch dicts (CPU tensors, (B, T)), the same on every rank
        (built with the same seed), e.g. :class:`lorakit.data.LengthBucketBatches`.
    rank, world_size : default: this process's.

    Every rank gets as many batches as ``batches`` has, so no rank waits for another at the end
    of an epoch; a global batch of B rows gives each rank B / world_size of them (the first ranks
    one more when it does not divide).
    """

    def __init__(
        self,
        batches: Iterable[Mapping[str, torch.Tensor]],
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.batches = batches
        self.world_size = _world_size() if world_size is None else world_size
        self.rank = _rank() if rank is None else rank
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in 0..{self.world_size - 1}.")
        self.batch_size = -(-getattr(batches, "batch_size", 1) // self.world_size)

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Shard]:
        for batch in self.batches:
            yield shard_batch(batch, self.rank, self.world_size)
