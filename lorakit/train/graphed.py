"""Training steps on fixed-shape buffers, captured once as CUDA graphs and replayed.

Why: an eager step of a GPT-2-sized model launches a few thousand kernels from Python. For the
short sequences of a data-to-text task the GPU finishes them faster than the host issues them,
so the step measures the host, and LoRA, which skips most weight gradients, is no faster than
full fine-tuning. A CUDA graph records the kernels of a step once and replays them with one
launch (:mod:`lorakit.train.graph` explains the rules). :func:`lorakit.train.train` uses this
module on CUDA by default (``TrainConfig(cuda_graphs="auto")``).

A graph replays fixed shapes, and batches differ in length. So every batch is padded to a
*bucket*: its length ``T`` is rounded up to a multiple of :data:`LENGTH_MULTIPLE`, its rows up to
the batch size, and its labelled positions (the rows the LM head and the loss see) up to a
multiple of a quarter of ``B·T``. Padding changes nothing: padded tokens sit after the real
ones, which a causal model never attends to, and padded label rows carry the target -100, so
they add no loss and no gradient (:func:`lorakit.train.linear_cross_entropy` with a ``count``).
The attention mask of a right-padded batch is therefore not needed and is dropped. A handful of
graphs (one per bucket) serve a whole epoch.

Two kinds of graph, so gradient accumulation works as in the eager loop:

* one per bucket for forward + backward of a micro-batch: the batch is copied into the bucket's
  static input buffers, the gradients accumulate into static ``.grad`` tensors, and the loss is
  added to a running sum on the device (read only when a row of the history is logged);
* one for the optimizer step: gradient clipping, fused AdamW with ``capturable=True`` and its
  learning rate in a device tensor (the schedule writes it before each replay), then zeroing
  the gradients.

Before the first capture one step runs eagerly on a side stream (PyTorch needs it to set up
cuBLAS, autograd and the optimizer's state); the parameters and the optimizer state are then
restored, so that warm-up trains nothing. Each new bucket runs one eager forward + backward first
(its gradients are put back). While capturing, the LoRA layers use their fused path
(:func:`lorakit.lora.fast.fast_path`): inside a graph its fewer kernels pay, eagerly they would
not. A batch the graphs cannot take (an attention mask that is not right padding, keys other
than ``input_ids``/``attention_mask``/``labels``) runs eagerly into the same gradients; a model
whose step cannot be captured at all makes :func:`train` say why, once, and train eagerly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

import torch
from torch import nn

from .loss import IGNORE_INDEX, LabelPositions, label_positions
from .step import _prepare

LENGTH_MULTIPLE = 16  # sequence lengths are padded up to a multiple of this
BATCH_KEYS = {"input_ids", "attention_mask", "labels"}


def bucket_length(T: int, max_positions: int | None = None) -> int:
    """``T`` rounded up to a multiple of :data:`LENGTH_MULTIPLE`, at most ``max_positions``."""
    padded = -(-T // LENGTH_MULTIPLE) * LENGTH_MULTIPLE
    return min(padded, max_positions) if max_positions and T <= max_positions else padded


def label_capacity(n: int, B: int, T: int) -> int:
    """Label rows a (B, T) bucket reserves for ``n`` labels: ``n`` rounded up to a quarter of B·T
    (in multiples of 64), so that at most four graphs serve one (B, T)."""
    quantum = max(64, -(-(B * T // 4) // 64) * 64)
    return min(-(-n // quantum) * quantum, B * T)


def why_not_static(batch: Mapping[str, torch.Tensor]) -> str | None:
    """Why ``batch`` (CPU tensors) cannot go through a captured step, or ``None`` if it can."""
    extra = sorted(set(batch) - BATCH_KEYS)
    if extra:
        return f"the batch has keys {extra} besides {sorted(BATCH_KEYS)}"
    mask = batch.get("attention_mask")
    if mask is not None and not bool((mask[:, 1:] <= mask[:, :-1]).all() and mask[:, 0].all()):
        return "its attention mask is not right padding (every row 1...1 0...0)"
    return None


def pad_batch(
    batch: Mapping[str, torch.Tensor], B: int, T: int
) -> tuple[torch.Tensor, LabelPositions, int]:
    """``(input_ids (B, T), positions padded to their bucket, real label count)`` of a CPU batch.

    New columns and rows get token 0 and no label; they sit after every real token of their row
    (or in rows of their own), so a causal model's outputs at the real positions do not change.
    """
    ids, labels = batch["input_ids"], batch["labels"]
    b, t = ids.shape
    out_ids = torch.zeros((B, T), dtype=torch.long)
    out_ids[:b, :t] = ids
    out_labels = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)
    out_labels[:b, :t] = labels
    pos = label_positions(out_labels)
    N = label_capacity(pos.n, B, T)
    rows = torch.zeros(N, dtype=torch.long)
    target = torch.full((N,), IGNORE_INDEX, dtype=torch.long)
    rows[: pos.n], target[: pos.n] = pos.rows, pos.target
    return out_ids, LabelPositions(rows, target, torch.tensor(float(pos.n)), True), pos.n


def pad_length(batch: Mapping[str, torch.Tensor], T: int) -> dict[str, torch.Tensor]:
    """A right-padded CPU batch widened to length ``T`` (token 0, attention 0, label -100).

    For ``torch.compile``: a few lengths instead of every length keeps it from compiling the
    model again for each new shape.
    """
    fill = {"input_ids": 0, "attention_mask": 0, "labels": IGNORE_INDEX}
    out = dict(batch)
    for key, value in fill.items():
        if key in batch and batch[key].shape[1] < T:
            wide = batch[key].new_full((batch[key].shape[0], T), value)
            wide[:, : batch[key].shape[1]] = batch[key]
            out[key] = wide
    return out


class _Bucket:
    """Static device buffers of one (B, T, N) shape and, once captured, its graph."""

    def __init__(self, B: int, T: int, N: int, device: torch.device) -> None:
        self.input_ids = torch.zeros((B, T), dtype=torch.long, device=device)
        self.positions = LabelPositions(
            torch.zeros(N, dtype=torch.long, device=device),
            torch.zeros(N, dtype=torch.long, device=device),
            torch.ones((), device=device),
            True,
        )
        self.graph: torch.cuda.CUDAGraph | None = None

    def load(self, ids: torch.Tensor, positions: LabelPositions) -> None:
        self.input_ids.copy_(ids, non_blocking=True)
        for static, new in zip(self.positions[:3], positions[:3]):
            static.copy_(new, non_blocking=True)


class StaticSteps:
    """Forward + backward of micro-batches and the optimizer step, on static buffers.

    Parameters
    ----------
    model : the model being trained (on ``device``).
    params : its trainable parameters, the ones ``optimizer`` steps.
    optimizer : on CUDA created with ``capturable=True`` and a tensor learning rate.
    loss_fn : ``loss_fn(batch, positions) -> (loss, n)`` for a batch dict on the device.
    grad_accum : micro-batches per optimizer step (each loss is divided by it).
    grad_clip : clip the global gradient norm to this (``None``/0: no clipping).
    capture : record CUDA graphs and replay them; ``False`` runs the same steps eagerly on the
        same padded buffers (how the padding is tested on a CPU).
    fast : a context manager factory switching the model's LoRA layers to their fused path while
        capturing (``None``: leave them).
    """

    def __init__(
        self,
        model: nn.Module,
        params: list[nn.Parameter],
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[Mapping[str, torch.Tensor], LabelPositions], tuple],
        grad_accum: int,
        grad_clip: float | None,
        device: torch.device,
        capture: bool,
        batch_size: int,
        fast: Callable[[], contextlib.AbstractContextManager] | None = None,
        max_positions: int | None = None,
    ) -> None:
        self.model, self.params, self.opt = model, params, optimizer
        self.loss_fn, self.grad_accum, self.grad_clip = loss_fn, grad_accum, grad_clip
        self.device, self.capture, self.batch_size = device, capture, batch_size
        self.fast = fast or contextlib.nullcontext
        self.max_positions = max_positions
        self.loss_sum = torch.zeros((), device=device)
        self.buckets: dict[tuple[int, int, int], _Bucket] = {}
        self.opt_graph: torch.cuda.CUDAGraph | None = None
        self.pool = torch.cuda.graph_pool_handle() if capture else None
        self.eager_batches = 0

    # -- the two step functions (recorded into graphs, or run as they are) --
    def _forward_backward(self, bucket: _Bucket, acc: torch.Tensor) -> None:
        loss, _ = self.loss_fn({"input_ids": bucket.input_ids}, bucket.positions)
        (loss / self.grad_accum).backward()
        acc.add_(loss.detach())

    def _optimizer_step(self) -> None:
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=False)

    # -- public --
    @property
    def graphs(self) -> int:
        """How many CUDA graphs have been captured (buckets + the optimizer step)."""
        return sum(b.graph is not None for b in self.buckets.values()) + (
            self.opt_graph is not None
        )

    def micro(self, batch: Mapping[str, torch.Tensor]) -> int:
        """Forward + backward of one CPU batch; returns its number of tokens (for throughput)."""
        mask = batch.get("attention_mask")
        ntok = int(mask.sum()) if mask is not None else batch["input_ids"].numel()
        B, T = batch["input_ids"].shape
        B, T = max(B, self.batch_size), bucket_length(T, self.max_positions)
        ids, positions, _ = pad_batch(batch, B, T)
        key = (B, T, positions.rows.numel())
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = _Bucket(*key, self.device)
        bucket.load(ids, positions)
        if not self.capture:
            self._forward_backward(bucket, self.loss_sum)
            return ntok
        if self.opt_graph is None:
            self._capture_optimizer(bucket)
        if bucket.graph is None:
            self._capture_bucket(bucket)
        bucket.graph.replay()
        return ntok

    def eager_micro(self, batch: Mapping[str, torch.Tensor]) -> int:
        """A batch the graphs cannot take, run eagerly into the same gradients and loss sum."""
        moved, positions, ntok = _prepare(batch, self.device)
        self._eager_loss(moved, positions)
        self.eager_batches += 1
        return ntok

    def _eager_loss(self, batch, positions) -> None:
        loss, _ = self.loss_fn(batch, positions)
        (loss / self.grad_accum).backward()
        self.loss_sum.add_(loss.detach())

    def step(self) -> None:
        """The optimizer step (clip, AdamW, zero the gradients)."""
        if self.opt_graph is not None:
            self.opt_graph.replay()
        else:
            self._optimizer_step()

    def read_loss(self) -> float:
        """The summed micro-batch losses since the last read (waits for the GPU), then reset."""
        value = float(self.loss_sum)
        self.loss_sum.zero_()
        return value

    # -- capture --
    def _side_stream(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` eagerly on a side stream, as PyTorch asks before a capture."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), self.fast():
            fn()
        torch.cuda.current_stream(self.device).wait_stream(side)

    def _capture_optimizer(self, bucket: _Bucket) -> None:
        """Warm up one whole step eagerly, undo it, then capture the optimizer step."""
        saved = [p.detach().clone() for p in self.params]
        grads = [None if p.grad is None else p.grad.clone() for p in self.params]
        scratch = torch.zeros((), device=self.device)

        def warm() -> None:
            self._forward_backward(bucket, scratch)
            self._optimizer_step()

        self._side_stream(warm)
        with torch.no_grad():  # undo the warm-up step: parameters, optimizer state, gradients
            for p, s in zip(self.params, saved):
                p.copy_(s)
            for state in self.opt.state.values():
                for value in state.values():
                    if torch.is_tensor(value):
                        value.zero_()  # AdamW's initial state is all zeros (step 0)
            for p, g in zip(self.params, grads):
                if p.grad is not None:
                    p.grad.copy_(g) if g is not None else p.grad.zero_()
        self.opt_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.opt_graph, pool=self.pool):
            self._optimizer_step()

    def _capture_bucket(self, bucket: _Bucket) -> None:
        """One eager forward + backward of this shape (gradients put back), then capture it."""
        grads = [None if p.grad is None else p.grad.clone() for p in self.params]
        scratch = torch.zeros((), device=self.device)
        self._side_stream(lambda: self._forward_backward(bucket, scratch))
        with torch.no_grad():
            for p, g in zip(self.params, grads):
                if p.grad is not None:
                    p.grad.copy_(g) if g is not None else p.grad.zero_()
        graph = torch.cuda.CUDAGraph()
        with self.fast(), torch.cuda.graph(graph, pool=self.pool):
            self._forward_backward(bucket, self.loss_sum)
        bucket.graph = graph


def reset_cuda_generators() -> None:
    """Take the CUDA random-number generators out of capture mode after a failed capture.

    A capture that raises ends without PyTorch's bookkeeping for the generators, which then
    refuse every later random draw ("Offset increment outside graph capture"). A generator state
    cloned at its current seed and offset has no capture in progress.
    """
    for gen in torch.cuda.default_generators:
        if hasattr(gen, "graphsafe_set_state"):
            gen.graphsafe_set_state(gen.clone_state())
