"""A whole training step captured once in a CUDA graph and replayed: no Python, no launch gaps.

Why: a step of a mid-sized model launches a few thousand kernels (forward, backward, gradient
clipping, optimizer). In eager PyTorch each launch costs the host several microseconds of Python
and driver work. When the GPU finishes kernels faster than the host issues them, the step is
*launch-bound*: its time measures the host, and a LoRA step, which skips a third of the matmul work,
is no faster than a full fine-tuning step. A CUDA graph records the kernels of one step once and
replays them with a single launch, so the step costs what the GPU needs for it.

The rules of the game (PyTorch's "whole-network capture"): every tensor the step reads or writes
keeps its address, so the inputs are *static* (copy each new batch into them with ``copy_``); the
shapes never change; nothing in the step waits for the host (no ``.item()``, no data-dependent
Python branches); the optimizer is created with ``capturable=True`` so its step counter lives on
the GPU. Random numbers (dropout) are fine: PyTorch advances the generator's offset on each replay.

Use::

    opt = torch.optim.AdamW(params, lr=2e-4, fused=True, capturable=True)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, _ = causal_lm_loss(model, static_batch, 0.1, positions=static_positions)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss.detach()

    graphed = CUDAGraphStep(step, opt)     # warms up, then captures
    for batch in batches:                  # batches of one fixed shape
        static_batch["input_ids"].copy_(batch["input_ids"])
        loss = graphed()                   # replays the whole step

``python -m lorakit.bench train-step`` times every method both eagerly and graphed this way.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class CUDAGraphStep:
    """Capture ``step`` (forward, backward, optimizer step; returns the loss) and replay it.

    Parameters
    ----------
    step : callable with no arguments that runs one whole training step on static tensors and
        returns the loss as a tensor (detached). It must not zero the gradients itself: they are
        allocated once, during capture, and every replay overwrites them.
    optimizer : the optimizer ``step`` steps; it must have been created with ``capturable=True``
        (or be one without that option, e.g. plain SGD).
    warmup : eager steps run on a side stream before capture (PyTorch asks for a few: they set
        up cuBLAS workspaces, optimizer state and autograd's stream bookkeeping). They train.

    Calling the object replays the step and returns the same loss tensor, overwritten in place;
    read it (``float(loss)``) only when you need it, since that waits for the GPU.
    """

    def __init__(
        self, step: Callable[[], torch.Tensor], optimizer: torch.optim.Optimizer, warmup: int = 3
    ) -> None:
        if warmup < 1:
            raise ValueError(
                f"warmup must be >= 1 (PyTorch needs eager steps first), got {warmup}."
            )
        if any(g.get("capturable") is False for g in optimizer.param_groups):
            raise ValueError(
                f"{type(optimizer).__name__} was created with capturable=False; a "
                "graphed step needs its step counter on the GPU. Create it with "
                "capturable=True (e.g. AdamW(params, fused=True, capturable=True))."
            )
        params = [p for g in optimizer.param_groups for p in g["params"]]
        off = sorted({str(p.device) for p in params if p.device.type != "cuda"})
        if off:
            raise ValueError(
                f"CUDAGraphStep captures CUDA work only; the optimizer has parameters "
                f"on {', '.join(off)}. Move the model to the GPU first (on a CPU, "
                "call the step function directly)."
            )
        self.optimizer = optimizer
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                optimizer.zero_grad(set_to_none=True)
                step()
        torch.cuda.current_stream().wait_stream(side)
        # gradients are None now, so backward *allocates* them inside the graph's private memory
        # pool and every replay writes them afresh (no stale accumulation)
        optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss = step()
        self.replays = 0

    def __call__(self) -> torch.Tensor:
        """Run one captured step; returns the loss tensor (overwritten at the next call)."""
        self.graph.replay()
        self.replays += 1
        return self.loss
