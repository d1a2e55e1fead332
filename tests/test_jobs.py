"""``--jobs N``: grid runs in worker processes give what they give in one process."""

from __future__ import annotations

import copy
import os
import time

import pytest
import torch
from conftest import make_tiny_gpt2

from lorakit.experiments import _jobs
from lorakit.experiments._jobs import Job, JobFailed, gpu_slots, run_jobs
from lorakit.presets import seed_everything


def one_run(ctx, seed: int) -> dict:
    """A tiny stand-in for a fine-tune: seeded, on a copy of the shared base."""
    seed_everything(seed)
    model = copy.deepcopy(ctx["base"])
    ids = torch.randint(0, 300, (2, 8), device=ctx["device"])
    loss = model(ids, labels=ids).loss
    loss.backward()
    return {
        "seed": seed,
        "loss": loss.item(),
        "extra": ctx["extra"],
        "grad": model.transformer.h[0].attn.c_attn.weight.grad.sum().item(),
        "pid": os.getpid(),
        "threads": torch.get_num_threads(),
    }


def failing_run(ctx, seed: int) -> int:
    if seed == 2:
        raise ValueError(f"seed {seed} is bad")
    return seed


def dying_run(ctx, seed: int) -> int:
    if seed == 1:
        os._exit(3)  # what an out-of-memory kill looks like from outside
    time.sleep(0.2)
    return seed


@pytest.fixture(scope="module")
def context():
    return {"base": make_tiny_gpt2(), "extra": "shared"}


def test_workers_give_the_same_results_as_one_process(context):
    before = {k: v.clone() for k, v in context["base"].state_dict().items()}
    jobs = [Job(f"seed {s}", (s,), required=s < 3) for s in range(5)]
    alone = run_jobs(one_run, jobs, context, 1, device="cpu")
    seen = []
    side_by_side = run_jobs(
        one_run,
        jobs,
        context,
        2,
        device="cpu",
        threads=1,
        skip=lambda job: job.args[0] == 4,
        on_done=lambda k, job, r: seen.append((k, job.label)),
    )
    assert side_by_side[4] is None and [k for k, _ in seen] == [1, 2, 3, 4]
    assert {label for _, label in seen} == {"seed 0", "seed 1", "seed 2", "seed 3"}
    for a, b in zip(alone[:4], side_by_side[:4]):
        assert {k: a[k] for k in ("seed", "loss", "grad", "extra")} == {
            k: b[k] for k in ("seed", "loss", "grad", "extra")
        }
    pids = {r["pid"] for r in side_by_side[:4]}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert {r["threads"] for r in side_by_side[:4]} == {1}
    assert all(torch.equal(before[k], v) for k, v in context["base"].state_dict().items())


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_failing_run_names_itself(context, n_jobs):
    jobs = [Job(f"run seed={s}", (s,)) for s in range(4)]
    with pytest.raises(JobFailed, match=r"run seed=2 failed.*ValueError: seed 2 is bad"):
        run_jobs(failing_run, jobs, context, n_jobs, device="cpu", threads=1)


def test_a_worker_that_dies_is_reported(context):
    jobs = [Job(f"seed {s}", (s,)) for s in range(3)]
    with pytest.raises(JobFailed, match="worker process died.* in flight: .*seed 1"):
        run_jobs(dying_run, jobs, context, 2, device="cpu", threads=1)


def test_gpus_are_shared_round_robin(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu_slots(None, 3) == ["0", "1", "0"] and gpu_slots("cuda", 2) == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,7")
    assert gpu_slots("cuda", 4) == ["3", "5", "7", "3"]
    assert gpu_slots("cuda:1", 2) == [None, None]  # one GPU named: every worker uses it
    assert gpu_slots("cpu", 2) == [None, None]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    assert gpu_slots("cuda", 2) == [None, None]  # a single GPU: nothing to spread
    with pytest.raises(ValueError, match="n_jobs must be >= 1"):
        run_jobs(one_run, [], {}, 0)
    assert _jobs.cpu_cores() >= 1
