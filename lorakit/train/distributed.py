"""Training on several GPUs (or several CPU processes) with ``torch.distributed``: DDP and FSDP.

``torchrun --standalone --nproc_per_node N script.py`` starts the script N times, one process
("rank") per GPU. Each rank calls :func:`init_distributed`, builds the same model (same seed),
makes the same global batches (same seed) and calls :func:`lorakit.train.train`, which then
splits the work by ``TrainConfig(distributed=...)``:

* ``"ddp"`` (what ``"auto"`` picks under a process group of two or more ranks): every rank holds
  the whole model and, after each backward, the gradients are averaged over the ranks. Only
  parameters with ``requires_grad`` take part, so under LoRA only A and B are reduced (GPT-2
  medium, r = 4 on q, v: 393,216 numbers), never the frozen base. A trainable parameter that
  the loss does not reach would make plain DDP fail at the next step ("Expected to have finished
  reduction..."); lorakit builds DDP with ``static_graph=True``, which finds such parameters in
  the first step and leaves them out.
* ``"fsdp"`` (FSDP2, ``torch.distributed.fsdp.fully_shard``): every parameter, frozen or not, is
  cut into N pieces, one per rank; each transformer block is gathered just before it runs and
  freed after, so the frozen base costs 1/N of its memory per rank. A block mixes the frozen W0
  with the trainable A and B; FSDP2 shards parameter by parameter, so that mix needs nothing
  special (FSDP1 needed ``use_orig_params=True``) and only A and B get gradients.

The data: every rank is given the same global batches and :class:`ShardedBatches` hands each
rank its own rows of each one. Each rank's mean loss is weighted by its share of the batch's
label tokens, so the averaged gradient is that of the global batch, as one process would compute
it on the whole batch. The loss in ``history`` and the evaluation loss are reduced over the
ranks (every rank returns the same numbers); only rank 0 shows the progress bar.

The steps run eagerly: under a process group, ``cuda_graphs="auto"`` trains without CUDA graphs.

Saving and loading: the LoRA weights of an FSDP model are sharded, so :func:`save_adapter` is
called on every rank; it gathers only the LoRA tensors (not the base) and rank 0 writes the
folder. :func:`load_adapter` is called on every rank, on a plain or an FSDP-sharded model.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Mapping

import torch
import torch.distributed as dist
from torch import nn

from .dist_data import Shard, ShardedBatches, shard_batch
from .dist_io import communication_per_step, load_adapter, memory_per_gpu, save_adapter
from .step import _autocast, _Forward, _prepare

MODES = ("auto", "ddp", "fsdp", "none")


def is_initialized() -> bool:
    """Whether a ``torch.distributed`` process group is running in this process."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """The number of ranks (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0 (and without a process group): the rank that logs and writes files."""
    return rank() == 0


def init_distributed(backend: str | None = None, timeout_s: float = 600.0) -> tuple[int, int]:
    """Join the process group that ``torchrun`` set up; returns ``(rank, world_size)``.

    ``backend``: ``"nccl"`` on CUDA, ``"gloo"`` otherwise (default: by ``torch.cuda``). With
    NCCL the process's GPU is ``cuda:LOCAL_RANK``. Started without ``torchrun`` (no
    ``MASTER_ADDR`` in the environment) it does nothing and returns ``(0, 1)``; called again, it
    returns the running group's numbers.
    """
    if is_initialized() or "MASTER_ADDR" not in os.environ:
        return rank(), world_size()
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return rank(), world_size()


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks (children of the outermost ``nn.ModuleList``s): FSDP's units."""
    found: list[nn.Module] = []
    lists: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and not any(name.startswith(p + ".") for p in lists):
            lists.append(name)
            found += [c for c in module if next(c.parameters(), None) is not None]
    return found


def _broadcast_from_rank0(model: nn.Module) -> None:
    """Make every rank's parameters and buffers rank 0's (before FSDP keeps one piece of each)."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=0)


def _fsdp_root(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    root = model.__dict__.get("_lorakit_fsdp_root")  # a second train() reuses the sharding
    if root is not None:
        return root
    if any(isinstance(m, FSDPModule) for m in model.modules()):
        raise ValueError(
            "The model is already sharded by fully_shard outside lorakit; pass the "
            "unsharded model: train(..., TrainConfig(distributed='fsdp')) shards it."
        )
    _broadcast_from_rank0(model)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for block in _blocks(model):
        fully_shard(block, mesh=mesh)
    root = fully_shard(_Forward(model), mesh=mesh)
    model.__dict__["_lorakit_fsdp_root"] = root  # not a submodule: no cycle in modules()
    return root


class DataParallelRun:
    """How :func:`lorakit.train.train` runs under a process group (made by :func:`data_parallel`).

    Attributes
    ----------
    mode : ``"ddp"`` or ``"fsdp"``.
    device : this rank's device (``cuda:LOCAL_RANK`` on GPUs).
    module : the DDP / FSDP-wrapped module that every forward goes through (after :meth:`wrap`).
    """

    def __init__(self, mode: str, device: torch.device) -> None:
        self.mode, self.device = mode, device
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.model: nn.Module | None = None
        self.module: nn.Module | None = None

    def shard(self, batches):
        """``batches`` as :class:`ShardedBatches` of this rank (unchanged if they already are)."""
        return (
            batches
            if isinstance(batches, ShardedBatches)
            else ShardedBatches(batches, self.rank, self.world_size)
        )

    def wrap(self, model: nn.Module) -> nn.Module:
        """Wrap ``model`` (already on :attr:`device`) in DDP or shard it with FSDP2."""
        self.model = model
        if self.mode == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.module = DistributedDataParallel(
                _Forward(model), device_ids=ids, static_graph=True, gradient_as_bucket_view=True
            )
        else:
            self.module = _fsdp_root(model, self.device)
        return self.module

    def steps(self, eager_steps) -> _SyncedSteps:
        """The loop's eager steps, with every forward through :attr:`module` and losses reduced."""
        return _SyncedSteps(self, eager_steps)

    @torch.no_grad()
    def evaluate(self, batches: Iterable[Mapping[str, torch.Tensor]], bf16: bool) -> float:
        """:func:`lorakit.train.evaluate_loss` of the global batches: each rank its rows,
        reduced.
        """
        from .loss import causal_lm_loss

        def fn(batch, positions):
            with _autocast(self.device, bf16):
                return causal_lm_loss(self.model, batch, positions=positions)

        was_training = self.model.training
        self.model.eval()
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        try:
            for batch in self.shard(batches):
                moved, positions, _ = _prepare(batch, self.device)
                loss, n = self.module(fn, moved, positions)
                total[0] += loss.double() * n
                total[1] += n
        finally:
            self.model.train(was_training)
        dist.all_reduce(total)
        if total[1] == 0:
            raise ValueError("evaluate got no batches; pass a non-empty list of batches.")
        return float(total[0] / total[1])

    def info(self) -> dict:
        """``{mode, world_size, backend}`` for :attr:`lorakit.train.TrainResult.distributed`."""
        return {"mode": self.mode, "world_size": self.world_size, "backend": dist.get_backend()}


class _SyncedSteps:
    """The loop's :class:`~lorakit.train.eager.EagerSteps` with the forward through DDP/FSDP, the
    loss weighted by the rank's share of label tokens, and the logged loss reduced over ranks."""

    def __init__(self, run: DataParallelRun, steps) -> None:
        self.run, self.inner, self.weight = run, steps, 1.0
        loss_fn = steps.loss_fn

        def weighted(batch, positions):
            loss, n = run.module(loss_fn, batch, positions)
            return loss * self.weight, n

        steps.loss_fn = weighted

    def micro(self, batch: Mapping[str, torch.Tensor]) -> int:
        self.weight = getattr(batch, "loss_weight", 1.0)
        ntok = self.inner.micro(batch)
        return getattr(batch, "global_tokens", 0) or ntok

    def step(self) -> None:
        self.inner.step()

    def read_loss(self) -> float:
        dist.all_reduce(self.inner.loss_sum)  # sum of weighted means = world_size x global mean
        return self.inner.read_loss() / self.run.world_size


def data_parallel(mode: str, device: torch.device, cfg=None) -> DataParallelRun | None:
    """The :class:`DataParallelRun` for ``TrainConfig.distributed = mode``, or ``None`` (one
    process).

    ``"auto"``: DDP under a process group of two or more ranks, else one process; ``"none"``:
    one process whatever the group. ``cfg`` (a :class:`~lorakit.train.TrainConfig`) is checked
    for settings that do not combine with the mode. A CUDA ``device`` without an index becomes
    this rank's GPU.
    """
    if mode not in MODES:
        raise ValueError(f"TrainConfig.distributed must be one of {MODES}, got {mode!r}.")
    if mode == "none" or (mode == "auto" and world_size() < 2):
        return None
    if not is_initialized():
        raise ValueError(
            f"TrainConfig(distributed={mode!r}) needs a process group: start the "
            "script with torchrun and call lorakit.train.distributed."
            "init_distributed() first (or use distributed='auto')."
        )
    mode = "ddp" if mode == "auto" else mode
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if cfg is not None:
        if cfg.cuda_graphs is True:
            raise ValueError(
                "TrainConfig(cuda_graphs=True) cannot be combined with distributed "
                "training: under a process group the steps run eagerly; use "
                "cuda_graphs='auto' (or False)."
            )
        if mode == "fsdp" and cfg.compile:
            raise ValueError(
                "TrainConfig(compile=True) is not supported with distributed='fsdp'; "
                "use compile=False, or distributed='ddp'."
            )
        if mode == "fsdp" and cfg.cast_frozen:
            raise ValueError(
                "TrainConfig(cast_frozen=True) is not supported with "
                "distributed='fsdp' (one block would gather bf16 and fp32 pieces); "
                "use cast_frozen=False."
            )
    return DataParallelRun(mode, device)


__all__ = [
    "DataParallelRun",
    "MODES",
    "Shard",
    "ShardedBatches",
    "communication_per_step",
    "data_parallel",
    "init_distributed",
    "is_initialized",
    "is_main_process",
    "load_adapter",
    "memory_per_gpu",
    "rank",
    "save_adapter",
    "shard_batch",
    "world_size",
]
