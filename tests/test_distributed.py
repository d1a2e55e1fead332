"""lorakit.train under torch.distributed: DDP and FSDP on 2 CPU processes (gloo) against one
process.

Tolerance of the equality tests: ``ATOL = 1e-5`` on the LoRA weights after training (lr 1e-2).
Two ranks compute the same global-batch gradient as one process, but summed in another order
(each rank over its rows, then the all-reduce), so float32 rounding differs: measured about 1e-7
after the run below. Adam's update of one step moves an entry by about lr = 1e-2, so a run that
trained on other rows, dropped the token weighting or skipped a step lands far outside 1e-5; the
negative control below shows one such run does (rank 0's rows alone).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import lorakit
from lorakit.train import TrainConfig, train
from lorakit.train import distributed as D
from tests.conftest import make_tiny_gpt2

ATOL = 1e-5
LORA = dict(r=4, alpha=8, targets=["q", "v"])
CFG = dict(
    lr=1e-2,
    max_steps=3,
    grad_accum=2,
    label_smoothing=0.1,
    grad_clip=1.0,
    log_every=1,
    progress=False,
    seed=0,
)


def global_batches(n: int = 6, rows: int = 6, T: int = 24, seed: int = 1) -> list[dict]:
    """Right-padded batches of uneven lengths and prompts: ranks get unequal label counts."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(1, 300, (rows, T), generator=g)
        mask = torch.ones(rows, T, dtype=torch.long)
        for r, length in enumerate(torch.randint(T // 3, T + 1, (rows,), generator=g).tolist()):
            mask[r, length:] = 0
        labels = ids.masked_fill(mask == 0, -100)
        labels[:, : int(torch.randint(2, 8, (1,), generator=g))] = -100
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


def lora_model(extra_unused: bool = False):
    model = make_tiny_gpt2(seed=0)
    torch.manual_seed(0)
    lorakit.apply_lora(model, lorakit.LoRAConfig(**LORA))
    if extra_unused:  # trainable, but the loss never reaches it: plain DDP fails at step 2
        model.unused_head = torch.nn.Linear(4, 4)
    return model


def lora_tensors(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in lorakit.lora_state_dict(model).items()}


def _worker(rank: int, port: int, out: str) -> None:
    import os

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)  # two ranks on a small CPU: no OpenMP oversubscription
    from torch.distributed.tensor import DTensor

    from lorakit.checkpoint import read_adapter

    assert D.init_distributed() == (rank, 2)
    report: dict = {}
    for mode in ("ddp", "fsdp"):
        model = lora_model()
        res = train(
            model,
            global_batches(),
            TrainConfig(distributed=mode, **CFG),
            eval_batches=global_batches(2, seed=5),
        )
        report[mode] = {
            "history": [h["loss"] for h in res.history],
            "evals": res.evals,
            "info": res.distributed,
            "tokens": res.tokens_seen,
        }
        D.save_adapter(model, f"{out}/{mode}")
        if mode == "fsdp":
            w = model.transformer.h[0].attn.c_attn.base.weight  # frozen W0, (32, 96)
            report["fsdp"]["base_local_rows"] = (
                w.to_local().shape[0] if isinstance(w, DTensor) else None
            )
            report["fsdp"]["base_unchanged"] = bool(
                torch.equal(
                    w.full_tensor(), make_tiny_gpt2(seed=0).transformer.h[0].attn.c_attn.weight
                )
            )
            # load_adapter on every rank: into a plain model, and back into the sharded one
            _, saved = read_adapter(f"{out}/fsdp")
            plain = D.load_adapter(make_tiny_gpt2(seed=0), f"{out}/fsdp")
            report["fsdp"]["plain_load_ok"] = all(
                torch.equal(v, saved[k]) for k, v in lora_tensors(plain).items()
            )
            with torch.no_grad():
                for p in model.parameters():
                    if p.requires_grad:
                        p.zero_()
            D.load_adapter(model, f"{out}/fsdp")
            report["fsdp"]["sharded_load_ok"] = all(
                torch.equal(v.full_tensor(), saved[k]) for k, v in lora_tensors(model).items()
            )
    # only A and B are all-reduced under DDP: count what a comm hook is handed
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    model = lora_model()
    run = D.data_parallel("ddp", torch.device("cpu"))
    run.wrap(model)
    reduced = []

    def counting_hook(state, bucket):
        reduced.append(bucket.buffer().numel())
        return allreduce_hook(state, bucket)

    run.module.register_comm_hook(None, counting_hook)
    batch = D.shard_batch(global_batches(1)[0], rank, 2)
    from lorakit.train.loss import causal_lm_loss

    loss, _ = run.module(lambda b: causal_lm_loss(model, b), dict(batch))
    loss.backward()
    report["reduced"] = sum(reduced)
    report["lora_params"] = lorakit.count_parameters(model)[0]
    # a trainable parameter the loss never reaches: no "unused parameters" error under DDP
    model = lora_model(extra_unused=True)
    res = train(model, global_batches(), TrainConfig(distributed="ddp", **CFG))
    report["unused_steps"] = res.steps
    res = train(model, global_batches(), TrainConfig(distributed="ddp", **CFG))  # a second call
    report["second_call_losses"] = [h["loss"] for h in res.history]
    # the benchmark's rows, at its smoke size, on these two ranks
    from lorakit.bench import multi_gpu

    smoke = dict(multi_gpu.SMOKE, steps=2)
    report["bench"] = {
        row: multi_gpu.run_row(row, *multi_gpu.ROWS["multi"][row], smoke, torch.device("cpu"), 2)
        for row in ("ddp_lora", "fsdp_full")
    }
    if rank == 0:
        Path(out, "report.json").write_text(json.dumps(report))
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Run :func:`_worker` on 2 gloo processes once; its report and folder."""
    out = tmp_path_factory.mktemp("dist")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=2, join=True)
    return json.loads((out / "report.json").read_text()), out


@pytest.fixture(scope="module")
def single():
    """The same training in one process on the whole global batches."""
    model = lora_model()
    res = train(model, global_batches(), TrainConfig(**CFG), eval_batches=global_batches(2, seed=5))
    return lora_tensors(model), res


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_ranks_train_as_one_process(two_ranks, single, mode):
    report, out = two_ranks
    ref, ref_res = single
    from lorakit.checkpoint import read_adapter

    _, saved = read_adapter(out / mode)  # the adapter rank 0 wrote (gathered under FSDP)
    assert _max_diff(saved, ref) < ATOL
    assert _max_diff(ref, lora_tensors(lora_model())) > 100 * ATOL  # it did train
    got = report[mode]
    assert got["info"] == {"mode": mode, "world_size": 2, "backend": "gloo"}
    assert got["history"] == pytest.approx([h["loss"] for h in ref_res.history], rel=1e-5)
    assert got["evals"][0]["eval_loss"] == pytest.approx(ref_res.evals[0]["eval_loss"], rel=1e-5)
    assert got["tokens"] == ref_res.tokens_seen  # tokens of all ranks


def test_negative_control_other_rows_differ(single):
    """Rank 0's rows alone (no reduction) lands far outside the tolerance."""
    ref, _ = single
    model = lora_model()
    train(model, [D.shard_batch(b, 0, 2) for b in global_batches()], TrainConfig(**CFG))
    assert _max_diff(lora_tensors(model), ref) > 100 * ATOL


def test_fsdp_shards_frozen_base_and_adapter_loads_anywhere(two_ranks, single):
    report, _ = two_ranks
    got = report["fsdp"]
    assert got["base_local_rows"] == 16  # W0 of c_attn, 32 rows: half on each rank
    assert got["base_unchanged"]
    assert got["plain_load_ok"] and got["sharded_load_ok"]


def test_ddp_reduces_only_lora_and_tolerates_unused_params(two_ranks):
    report, _ = two_ranks
    assert report["reduced"] == report["lora_params"] == 2 * (2 * 4 * 32 + 2 * 32 * 4)
    assert report["unused_steps"] == CFG["max_steps"]
    # train() called again on the same model: a new DDP wrapper, no gradient reduced twice
    model = lora_model(extra_unused=True)
    train(model, global_batches(), TrainConfig(**CFG))
    again = train(model, global_batches(), TrainConfig(**CFG))
    assert report["second_call_losses"] == pytest.approx(
        [h["loss"] for h in again.history], rel=1e-5
    )


def test_shard_batch_rows_trim_and_weights():
    batch = global_batches(1, rows=5)[0]
    parts = [D.shard_batch(batch, r, 2) for r in range(2)]
    assert [p["input_ids"].shape[0] for p in parts] == [3, 2]
    for p, lo in zip(parts, (0, 3)):
        width = p["input_ids"].shape[1]
        assert torch.equal(
            p["input_ids"], batch["input_ids"][lo : lo + len(p["input_ids"]), :width]
        )
        assert bool(p["attention_mask"][:, -1].any())  # trailing all-padding columns cut
        assert p.global_tokens == int(batch["attention_mask"].sum())
    n = [int((p["labels"][:, 1:] != -100).sum()) for p in parts]
    assert [p.loss_weight for p in parts] == pytest.approx([2 * k / sum(n) for k in n])
    with pytest.raises(ValueError, match="cannot be split over 3 ranks"):
        D.shard_batch(global_batches(1, rows=2)[0], 0, 3)
    sharded = D.ShardedBatches(global_batches(4), rank=1, world_size=2)
    assert len(sharded) == 4 and all(b["input_ids"].shape[0] == 3 for b in sharded)


def test_settings_errors():
    with pytest.raises(ValueError, match="distributed must be"):
        TrainConfig(distributed="zero")
    with pytest.raises(ValueError, match="needs a process group"):
        D.data_parallel("fsdp", torch.device("cpu"))
    assert D.data_parallel("auto", torch.device("cpu")) is None  # one process: plain loop
    assert (D.rank(), D.world_size(), D.is_main_process()) == (0, 1, True)


def test_memory_formula_gpt2_medium():
    phi, psi = 354_823_168, 393_216  # GPT-2 medium; LoRA r=4 on q, v
    full = D.memory_per_gpu(phi, phi, 2, "fsdp")
    assert full["total"] == pytest.approx(16 * phi / 2)
    lora = D.memory_per_gpu(phi, psi, 2, "ddp")
    assert lora["weights"] == 4 * phi and lora["optimizer"] == 8 * psi
    with pytest.raises(ValueError, match="strategy"):
        D.memory_per_gpu(phi, psi, 2, "zero3")
    # per step on 2 GPUs: DDP LoRA sends psi fp32 numbers (half, twice); FSDP gathers W0 twice
    assert D.communication_per_step(phi, psi, 2, "ddp")["total"] == 4 * psi
    assert D.communication_per_step(phi, psi, 2, "fsdp")["total"] == 4 * phi + 2 * psi


def test_bench_rows_on_two_ranks_and_one(two_ranks):
    from lorakit.bench import multi_gpu

    bench = two_ranks[0]["bench"]
    single = multi_gpu.run_row(
        "lora_1gpu", "lora", "none", dict(multi_gpu.SMOKE, steps=2), torch.device("cpu"), 1
    )
    rows = {**bench, "lora_1gpu": single}
    assert bench["ddp_lora"]["distributed"]["mode"] == "ddp"
    assert bench["fsdp_full"]["distributed"]["mode"] == "fsdp"
    assert single["distributed"] is None and single["world_size"] == 1
    for row in rows.values():
        assert row["steps"] == 2 and row["tokens_per_s"] > 0 and row["peak_mem_mib"] is None
    # the formula: FSDP full fine-tuning holds half of 16 bytes per parameter (+ gathered blocks)
    full = bench["fsdp_full"]
    assert full["formula_mib"]["optimizer"] == pytest.approx(8 * full["total_params"] / 2 / 2**20)
    assert bench["ddp_lora"]["trainable_params"] < full["trainable_params"] == full["total_params"]
    ratios = multi_gpu._ratios(rows, 2)
    assert ratios["ddp_scaling"]["value"] == pytest.approx(
        bench["ddp_lora"]["tokens_per_s"] / single["tokens_per_s"]
    )
    assert ratios["ddp_scaling"]["goal"] == ">= 1.8"
    assert "fsdp_full_vs_lora_memory" not in ratios  # no memory measured on a CPU
    assert "goal" not in multi_gpu._ratios(rows, 2, on_gpus=False)["ddp_scaling"]


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--gpus", "0"], "--gpus"),
        (["--device", "tpu"], "--device"),
        (["--device", "cpu"], "add --smoke"),
    ],
)
def test_bench_refuses_bad_arguments_before_any_work(argv, match, capsys):
    from lorakit.bench import multi_gpu

    with pytest.raises(SystemExit) as exit_:
        multi_gpu.main(argv)
    assert exit_.value.code == 2 and match in capsys.readouterr().err
