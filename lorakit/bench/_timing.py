"""Timing for the benchmarks: a clock, and training steps run variant by variant.

:class:`Timer` marks time with CUDA events on a GPU and the wall clock elsewhere; its
:meth:`Timer.time` times one call between two synchronisations (``python -m lorakit.bench
latency``). For ``python -m lorakit.bench train-step``, a :class:`StepRunner` holds a variant's
model, optimizer and batch and steps it eagerly or as a replayed CUDA graph; :func:`measure_time`
interleaves the runners in rounds and :func:`measure_memory` steps each alone for its peak
memory. Which variants exist and how their
models are built is the command's business (:mod:`lorakit.bench.train_step`): it passes
``make_model(name)``.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from lorakit.bench._train_step_report import FROZEN_BF16
from lorakit.lora import count_parameters
from lorakit.train import causal_lm_loss, label_positions
from lorakit.train.graph import CUDAGraphStep
from lorakit.train.optim import param_groups

MakeModel = Callable[[str], nn.Module]


class Timer:
    """Marks time with CUDA events on a GPU (no sync), wall clock elsewhere; milliseconds."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.cuda = device, device.type == "cuda"

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def elapsed(self, a, b) -> float:
        return a.elapsed_time(b) if self.cuda else (b - a) * 1000.0

    def time(self, call: Callable[[], object]) -> float:
        """Milliseconds of one ``call()``, the device synchronised before and after."""
        self.sync()
        start = self.mark()
        call()
        end = self.mark()
        self.sync()
        return self.elapsed(start, end)

    def sync(self) -> None:
        """Wait for the device's queued work (a no-op without CUDA)."""
        if self.cuda:
            torch.cuda.synchronize(self.device)


class StepRunner:
    """One variant's model, optimizer and batch, ready to step without any host sync.

    ``make_model(name)`` builds the variant's model on ``device`` (what the command decides).

    ``graph=True`` captures the whole step (forward, backward, clipping, AdamW) in a CUDA graph
    (:class:`lorakit.train.graph.CUDAGraphStep`) after ``warmup`` eager steps; each call of
    :meth:`step` then replays it.
    """

    def __init__(
        self,
        method: str,
        settings: dict,
        device: torch.device,
        make_model: MakeModel,
        compile_: bool = False,
        graph: bool = False,
    ) -> None:
        self.method = method
        self.model = make_model(method)
        self.trainable, self.total = count_parameters(self.model)
        cuda = device.type == "cuda"
        # capturable on CUDA for both modes, so eager and graphed run the same optimizer kernels
        self.opt = torch.optim.AdamW(
            param_groups(self.model, 0.01), lr=2e-4, fused=cuda, capturable=cuda
        )
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.backbone = torch.compile(self.model.base_model) if compile_ else None
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(
            0, settings["arch"]["vocab_size"], (settings["batch"], settings["seq"]), generator=g
        )
        # as lorakit.train does: positions found on the CPU, no all-ones attention mask
        self.positions = label_positions(ids).to(device)
        self.batch = {"input_ids": ids.to(device)}
        self.device_type = device.type
        self.loss = None
        self.graphed = None
        if graph:
            self.graphed = CUDAGraphStep(self._step, self.opt, warmup=max(1, settings["warmup"]))

    def _forward(self) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            loss, _ = causal_lm_loss(self.model, self.batch, 0.1, self.backbone, self.positions)
        return loss

    def _update(self) -> None:
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()

    def _step(self) -> torch.Tensor:
        """Forward, backward, clip, AdamW: the step a graph captures (gradients not zeroed)."""
        loss = self._forward()
        loss.backward()
        self._update()
        return loss.detach()

    def step(self, timer: Timer) -> tuple:
        """One step; returns the time marks (start, forward done, backward done, end).

        A graphed step is one replay, so its inner marks are ``None``.
        """
        if self.graphed is not None:
            t0 = timer.mark()
            self.loss = self.graphed()
            return t0, None, None, timer.mark()
        t0 = timer.mark()
        loss = self._forward()
        t1 = timer.mark()
        loss.backward()
        t2 = timer.mark()
        self._update()
        self.opt.zero_grad(set_to_none=True)
        self.loss = loss.detach()
        return t0, t1, t2, timer.mark()


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def measure_memory(methods, settings: dict, device: torch.device, **build) -> dict[str, float]:
    """Peak MiB of each variant alone on the device, stepped eagerly (CUDA only; else ``{}``)."""
    if device.type != "cuda":
        return {}
    timer, peaks = Timer(device), {}
    for method in methods:
        _free()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        runner = StepRunner(method, settings, device, **build)
        for _ in range(settings["mem_steps"]):
            runner.step(timer)
        torch.cuda.synchronize(device)
        peaks[method] = (torch.cuda.max_memory_allocated(device) - before) / 2**20
        del runner
    _free()
    return peaks


def _median_or_none(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def measure_time(
    methods,
    settings: dict,
    device: torch.device,
    modes=("eager",),
    failed: dict | None = None,
    **build,
) -> dict[str, dict[str, dict]]:
    """Interleaved rounds over every (mode, method); ``{mode: {method: timings}}``.

    Each method's ``step_ms`` is the median over rounds of a round's mean step time (ms). A
    method whose graph capture fails is left out of the graph mode; ``failed`` (a dict, filled
    in) says why.
    """
    failed = {} if failed is None else failed
    timer = Timer(device)
    runners = {}
    for mode in modes:
        for m in methods:
            try:
                runners[(mode, m)] = StepRunner(m, settings, device, graph=mode == "graph", **build)
            except RuntimeError as err:  # a capture that fails is reported, not fatal
                if mode != "graph":
                    raise
                failed[m] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
                _free()
    for runner in runners.values():
        for _ in range(settings["warmup"]):
            runner.step(timer)
    rounds = {key: [] for key in runners}
    phases = {key: [] for key in runners}
    order = list(runners)
    for k in range(settings["rounds"]):
        for key in order[k % len(order) :] + order[: k % len(order)]:
            start = timer.mark()
            phases[key] += [runners[key].step(timer) for _ in range(settings["steps"])]
            rounds[key].append((start, timer.mark()))
    if device.type == "cuda":
        torch.cuda.synchronize(device)

    def span(a, b):
        return None if a is None or b is None else timer.elapsed(a, b)

    out: dict[str, dict[str, dict]] = {mode: {} for mode in modes}
    for (mode, method), runner in runners.items():
        per_step = [timer.elapsed(a, b) / settings["steps"] for a, b in rounds[(mode, method)]]
        marks = phases[(mode, method)]
        out[mode][method] = {
            "method": method,
            "mode": mode,
            "trainable_params": runner.trainable,
            "total_params": runner.total,
            "frozen_bf16": method.endswith(FROZEN_BF16),
            "step_ms": statistics.median(per_step),
            "step_ms_min": min(per_step),
            "step_ms_rounds": per_step,
            "forward_ms": _median_or_none(span(a, b) for a, b, _, _ in marks),
            "backward_ms": _median_or_none(span(b, c) for _, b, c, _ in marks),
            "optimizer_ms": _median_or_none(span(c, d) for _, _, c, d in marks),
            "final_loss": float(runner.loss),
        }
    del runners
    _free()
    return out
