"""Several runs of an experiment's grid at once: the machinery behind ``--jobs N``.

A fine-tune of a small model is bound by kernel launches on the CPU and leaves most of a GPU
idle, so the grid experiments (methods x seeds x sizes, targets x ranks x seeds) can run several
of their runs side by side. Each run is a call ``fn(context, *args)`` of a module-level function;
``context`` holds what every run shares (the base model, the tokenizer, the prepared data, the
settings) and ``context["device"]`` the device to train on.

* ``jobs == 1``: the runs are made here, one after another (what the experiments always did).
* ``jobs > 1``: ``jobs`` worker processes, started with "spawn" (CUDA cannot be forked). The
  shared context is saved once with ``torch.save`` into a temporary folder, the base on the CPU;
  each worker loads it once (memory-mapped), moves the base to its device and then takes runs
  as they come. On a host with several GPUs worker ``i`` sees only GPU ``i mod n_gpus``
  (``CUDA_VISIBLE_DEVICES``); each worker uses ``cores // jobs`` torch threads, and never more
  than this process uses.

Every run seeds itself and copies the base, so its result does not depend on the worker that
made it or on what ran before: on a CPU, ``--jobs 2`` gives the same record as ``--jobs 1``
(timings aside) when the workers use as many torch threads as this process (float sums are
split by thread, so another thread count changes the last bits). A run that raises stops the
experiment with :class:`JobFailed`, which names the run and the error.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lorakit.presets import pick_device

_CTX: dict[str, Any] | None = None  # a worker's shared context, loaded once per process


@dataclass(frozen=True)
class Job:
    """One run of a grid: ``fn(context, *args)``; ``label`` names it in messages."""

    label: str
    args: tuple
    required: bool = True


class JobFailed(RuntimeError):
    """A run of the grid failed (the message names the run; the cause is chained)."""


def cpu_cores() -> int:
    """The CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def gpu_slots(device: str | None, n: int) -> list[str | None]:
    """What ``CUDA_VISIBLE_DEVICES`` each of ``n`` workers gets: round-robin over the GPUs seen.

    ``None`` (inherit) when the device is not CUDA, when there is at most one GPU, or when the
    device names one GPU (``"cuda:1"``): then every worker uses that one.
    """
    wants_cuda = device is None and torch.cuda.is_available() or device == "cuda"
    if not wants_cuda:
        return [None] * n
    seen = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = (
        [s.strip() for s in seen.split(",") if s.strip()]
        if seen
        else [str(i) for i in range(torch.cuda.device_count())]
    )
    return [ids[i % len(ids)] if len(ids) > 1 else None for i in range(n)]


def _init_worker(path: str, device: str | None, threads: int, slots) -> None:
    global _CTX
    gpu = slots.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # before this process touches CUDA
    torch.set_num_threads(threads)
    ctx = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    dev = pick_device(device)
    ctx["base"] = ctx["base"].to(dev)
    ctx["device"] = dev
    _CTX = ctx


def _in_worker(fn: Callable, args: tuple) -> Any:
    assert _CTX is not None, "worker started without its context"
    return fn(_CTX, *args)


def run_jobs(
    fn: Callable,
    jobs: Sequence[Job],
    context: dict[str, Any],
    n_jobs: int = 1,
    *,
    device: str | None = None,
    skip: Callable[[Job], bool] | None = None,
    on_done: Callable[[int, Job, Any], None] | None = None,
    threads: int | None = None,
) -> list[Any]:
    """Run ``fn(ctx, *job.args)`` for every job, ``n_jobs`` at a time.

    Parameters
    ----------
    fn : a module-level function (workers find it by name) returning something picklable.
    jobs : the runs, in the order results are returned.
    context : what every run shares; ``context["base"]`` is the base model (never changed:
        each place that runs jobs works on its own copy, moved to the device).
    n_jobs : how many runs at once (1: in this process).
    device : the device to train on (default: :func:`lorakit.presets.pick_device`).
    skip : asked before a job with ``required=False`` starts; ``True`` skips it.
    on_done : called here as each run finishes: ``on_done(k, job, result)``, k = 1, 2, ...
    threads : torch threads per worker (default ``cores // n_jobs``, at most this process's).

    Returns
    -------
    list
        ``fn``'s result for each job, in the order of ``jobs``; ``None`` for a skipped job.
    """
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be >= 1, got {n_jobs}.")
    results: list[Any] = [None] * len(jobs)
    done = 0

    def finish(i: int, result: Any) -> None:
        nonlocal done
        results[i], done = result, done + 1
        if on_done is not None:
            on_done(done, jobs[i], result)

    def wanted(job: Job) -> bool:
        return job.required or skip is None or not skip(job)

    if n_jobs == 1:
        dev = pick_device(device)
        ctx = {**context, "base": copy.deepcopy(context["base"]).to(dev), "device": dev}
        for i, job in enumerate(jobs):
            if wanted(job):
                try:
                    finish(i, fn(ctx, *job.args))
                except Exception as err:
                    raise JobFailed(f"run {job.label} failed: {type(err).__name__}: {err}") from err
        return results
    _run_in_workers(fn, jobs, context, n_jobs, device, threads, wanted, finish)
    return results


def _run_in_workers(fn, jobs, context, n_jobs, device, threads, wanted, finish) -> None:
    import multiprocessing as mp

    spawn = mp.get_context("spawn")
    n = min(n_jobs, len(jobs)) or 1
    threads = threads or max(1, min(torch.get_num_threads(), cpu_cores() // n))
    slots = spawn.Queue()
    for gpu in gpu_slots(device, n):
        slots.put(gpu)
    with tempfile.TemporaryDirectory(prefix="lorakit-jobs-") as tmp:
        path = Path(tmp) / "context.pt"
        base = context["base"]
        if next(base.parameters()).device.type != "cpu":
            base = copy.deepcopy(base).cpu()
        torch.save({**context, "base": base}, path)
        pool = ProcessPoolExecutor(
            n,
            mp_context=spawn,
            initializer=_init_worker,
            initargs=(str(path), device, threads, slots),
        )
        todo = iter(enumerate(jobs))
        running: dict = {}
        try:
            while True:
                while len(running) < n:
                    nxt = next(((i, j) for i, j in todo if wanted(j)), None)
                    if nxt is None:
                        break
                    running[pool.submit(_in_worker, fn, nxt[1].args)] = nxt
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(finished, key=lambda f: running[f][0]):
                    i, job = running.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool as err:
                        flight = ", ".join(j.label for _, j in [(i, job), *running.values()])
                        raise JobFailed(
                            f"a worker process died (killed for memory, or a crash "
                            f"in native code) while these runs were in flight: "
                            f"{flight}; run with --jobs 1 to see the error"
                        ) from err
                    except Exception as err:
                        raise JobFailed(
                            f"run {job.label} failed in a worker: {type(err).__name__}: {err}"
                        ) from err
                    finish(i, result)
        except BaseException:
            _stop(pool)
            raise
        pool.shutdown(wait=True)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now (runs in flight are abandoned)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # no public API for this
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + 10
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
