"""The loop: :func:`train` and :func:`evaluate_loss`.

The steps it drives are :class:`~lorakit.train.eager.EagerSteps` and, on a GPU,
:class:`~lorakit.train.graphed.StaticSteps`; the optimizer's groups and the LR schedule are in
:mod:`lorakit.train.optim`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping

import torch
from torch import nn

try:
    from tqdm import tqdm
except ImportError:  # installed without the [course] extra: train without a progress bar

    class tqdm:  # noqa: N801 - stands in for tqdm.tqdm
        def __init__(self, *args, **kwargs) -> None: ...
        def update(self, n: int = 1) -> None: ...
        def set_postfix(self, **kwargs) -> None: ...
        def close(self) -> None: ...


from lorakit.presets import deterministic_algorithms, pick_device, seed_everything

from .config import TrainConfig, TrainResult
from .distributed import data_parallel
from .eager import EagerSteps
from .graphed import StaticSteps, reset_cuda_generators, why_not_static
from .loss import backbone_and_head, causal_lm_loss
from .optim import linear_warmup_decay, param_groups
from .step import _autocast, _check_batch, _prepare


def _total_steps(batches: Iterable, cfg: TrainConfig) -> int:
    if cfg.max_steps is not None and not hasattr(batches, "__len__"):
        return cfg.max_steps
    if not hasattr(batches, "__len__"):
        raise TypeError(
            "train_batches has no len(), so the schedule length is unknown; "
            "pass a list (or a loader with __len__) or set TrainConfig.max_steps."
        )
    per_epoch = math.ceil(len(batches) / cfg.grad_accum)
    total = per_epoch * cfg.epochs
    return min(total, cfg.max_steps) if cfg.max_steps is not None else total


def _cast_frozen(model: nn.Module) -> list[str]:
    from lorakit.lora.precision import cast_frozen_, frozen_matmul_weights

    return cast_frozen_(model, torch.bfloat16) if frozen_matmul_weights(model) else []


def _use_graphs(cfg: TrainConfig, device: torch.device) -> bool:
    if cfg.cuda_graphs is True and device.type != "cuda":
        raise ValueError(
            f"TrainConfig(cuda_graphs=True) needs a CUDA device, not {device}; use "
            "cuda_graphs='auto' to train eagerly where there is none."
        )
    if cfg.cuda_graphs is True and cfg.compile:
        raise ValueError(
            "TrainConfig(compile=True) and cuda_graphs=True cannot be combined: the "
            "compiled step is not captured; choose one (cuda_graphs='auto' compiles)."
        )
    return device.type == "cuda" and not cfg.compile and cfg.cuda_graphs in (True, "auto")


def _max_positions(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


def train(
    model: nn.Module,
    train_batches: Iterable[Mapping[str, torch.Tensor]],
    cfg: TrainConfig,
    eval_batches: Iterable[Mapping[str, torch.Tensor]] | None = None,
    device: str | torch.device | None = None,
) -> TrainResult:
    """Train the ``requires_grad`` parameters of ``model`` in place.

    On a CUDA device the steps are replayed as CUDA graphs by default (``cfg.cuda_graphs``,
    :mod:`lorakit.train.graphed`); elsewhere they run eagerly. Both train the same way. Under
    ``torchrun`` every rank calls it with the same global batches and the ranks share the work
    by DDP or FSDP (``cfg.distributed``, :mod:`lorakit.train.distributed`). With
    ``cfg.deterministic`` it runs with deterministic kernels, so that it repeats bit for bit.

    Parameters
    ----------
    model : a causal LM; moved to ``device``.
    train_batches : re-iterable of batch dicts of CPU tensors (``input_ids`` (B, T),
        ``attention_mask`` (B, T), ``labels`` (B, T) with -100 = no loss), iterated once per
        epoch. The loop shifts: the output at position ``t`` predicts ``labels[:, t + 1]``.
    cfg : :class:`TrainConfig`.
    eval_batches : optional batches for :func:`evaluate_loss` at the end of each epoch.
    device : default :func:`lorakit.presets.pick_device` (under a process group: this rank's GPU).

    Returns
    -------
    TrainResult
    """
    with deterministic_algorithms(cfg.deterministic):
        return _train(model, train_batches, cfg, eval_batches, device)


def _train(model, train_batches, cfg, eval_batches, device) -> TrainResult:
    device = pick_device(None if device is None else str(device))
    run = data_parallel(cfg.distributed, device, cfg)  # None: this process trains alone
    device = run.device if run is not None else device
    bf16 = (device.type == "cuda") if cfg.bf16 is None else bool(cfg.bf16)
    graphs = _use_graphs(cfg, device) and run is None
    seed_everything(cfg.seed + (run.rank if run is not None else 0))  # dropout differs by rank
    model.to(device)
    if cfg.cast_frozen and bf16:
        _cast_frozen(model)
    if run is not None:  # before the optimizer: FSDP replaces the parameters by their shards
        train_batches = run.shard(train_batches)
        eval_batches = run.shard(eval_batches) if eval_batches is not None else None
        run.wrap(model)
    groups = param_groups(model, cfg.weight_decay)
    total = _total_steps(train_batches, cfg)
    schedule = linear_warmup_decay(cfg.warmup_steps, total)
    # a graphed optimizer step reads its learning rate from a device tensor, rewritten each step
    lr = torch.tensor(cfg.lr * schedule(0), device=device) if graphs else cfg.lr * schedule(0)
    opt = torch.optim.AdamW(
        groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=device.type == "cuda", capturable=graphs
    )
    params = [p for g in groups for p in g["params"]]
    backbone = None
    if cfg.compile:
        parts = backbone_and_head(model)
        if parts is None:
            raise ValueError(
                "TrainConfig.compile needs an HF causal LM with base_model and an "
                "LM head; set compile=False for this model."
            )
        backbone = torch.compile(parts[0])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def loss_fn(batch, positions):
        with _autocast(device, bf16):
            return causal_lm_loss(model, batch, cfg.label_smoothing, backbone, positions)

    # what both kinds of step take: the parameters, the optimizer, the loss, the accumulation
    step_args = (params, opt, loss_fn, cfg.grad_accum, cfg.grad_clip, device)
    if graphs:
        from lorakit.lora.fast import fast_path

        steps = StaticSteps(
            model,
            *step_args,
            capture=True,
            batch_size=getattr(train_batches, "batch_size", 1),
            fast=lambda: fast_path(model),
            max_positions=_max_positions(model),
        )
        info = {"graphs": 0, "capture_s": 0.0, "eager_batches": 0, "fallback": None}
    else:
        steps = EagerSteps(*step_args, _max_positions(model), pad_lengths=cfg.compile)
        info = None
        if run is not None:
            steps = run.steps(steps)

    result = TrainResult()
    bar = tqdm(
        total=total,
        disable=not cfg.progress or (run is not None and run.rank != 0),
        desc="train",
        mininterval=1.0,
    )
    start = time.perf_counter()
    win_micro, win_tokens, win_start = 0, 0, start
    # (step, time, capture seconds so far): every step when eager; when graphed, only where the
    # loss is read, since replays return before the GPU has run them
    marks: list[tuple[int, float, float]] = []
    step, epoch, seen = 0, 1, 0

    def micro(batch) -> int:
        if info is None or info["fallback"] is not None:
            return steps.micro(batch) if info is None else steps.eager_micro(batch)
        if why_not_static(batch) is not None:
            return steps.eager_micro(batch)
        graphs_before, t0 = steps.graphs, time.perf_counter()
        try:
            ntok = steps.micro(batch)
        except Exception as err:  # noqa: BLE001 - any capture failure: train eagerly instead
            if cfg.cuda_graphs is True:
                raise
            info["fallback"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            print(
                f"lorakit.train: this model's step could not be captured as a CUDA graph "
                f"({info['fallback']}); training eagerly."
            )
            reset_cuda_generators()
            torch.cuda.synchronize(device)
            return steps.eager_micro(batch)
        if steps.graphs != graphs_before:
            info["capture_s"] += time.perf_counter() - t0
        return ntok

    def optimizer_step() -> None:
        nonlocal step, win_micro, win_tokens, win_start
        steps.step()
        step += 1
        new_lr = cfg.lr * schedule(step)
        if graphs:
            lr.fill_(new_lr)
        else:
            for group in opt.param_groups:
                group["lr"] = new_lr
        bar.update(1)
        logged = step % cfg.log_every == 0 or step == total
        if info is None and not logged:
            marks.append((step, time.perf_counter(), 0.0))
        if logged:
            mean_loss = steps.read_loss() / win_micro  # waits for the device, once per window
            now = time.perf_counter()
            marks.append((step, now, 0.0 if info is None else info["capture_s"]))
            result.history.append(
                {
                    "step": step,
                    "epoch": epoch,
                    "loss": mean_loss,
                    "lr": new_lr,
                    "tokens_per_s": win_tokens / max(now - win_start, 1e-9),
                    "seconds": now - win_start,
                }
            )
            bar.set_postfix(loss=f"{mean_loss:.3f}")
            win_micro, win_tokens, win_start = 0, 0, now

    model.train()
    for epoch in range(1, cfg.epochs + 1):
        n_micro = 0
        for batch in train_batches:
            _check_batch(batch)
            ntok = micro(batch)
            win_micro += 1
            win_tokens += ntok
            seen += ntok
            n_micro += 1
            if n_micro % cfg.grad_accum == 0:
                optimizer_step()
                if step >= total:
                    break
        if n_micro % cfg.grad_accum and step < total:
            optimizer_step()  # the epoch's last, partial accumulation
        if eval_batches is not None:
            eval_start = time.perf_counter()
            eval_loss = (
                run.evaluate(eval_batches, bf16)
                if run is not None
                else evaluate_loss(model, eval_batches, device, bf16)
            )
            result.evals.append({"epoch": epoch, "step": step, "eval_loss": eval_loss})
            model.train()
            win_start += time.perf_counter() - eval_start  # eval time is not training throughput
        if step >= total:
            break
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        result.peak_mem_mb = torch.cuda.max_memory_allocated(device) / 2**20
    result.wall_s = time.perf_counter() - start
    result.steps = step
    result.tokens_seen = seen
    if len(marks) >= 2:
        (s0, t0, c0), (s1, t1, c1) = marks[0], marks[-1]
        result.step_time_s = (t1 - t0 - (c1 - c0)) / (s1 - s0)
    if info is not None:
        info.update(graphs=steps.graphs, eager_batches=steps.eager_batches)
        result.cuda_graphs = info
    if run is not None:
        result.distributed = run.info()
    model.eval()
    return result


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    device: str | torch.device | None = None,
    bf16: bool | None = None,
) -> float:
    """Mean next-token NLL over all label tokens of ``batches`` (no label smoothing).

    Token-weighted: every label token counts once, however the tokens are spread over batches.
    The model's train/eval mode is restored afterwards. ``exp`` of the result is the perplexity.
    ``bf16``: autocast, ``None`` meaning "on CUDA yes, elsewhere no" (as in :class:`TrainConfig`).
    """
    device = pick_device(None if device is None else str(device))
    bf16 = device.type == "cuda" if bf16 is None else bool(bf16)
    was_training = model.training
    model.eval()
    losses: list[tuple[torch.Tensor, int]] = []
    try:
        for batch in batches:
            batch, positions, _ = _prepare(batch, device)
            with _autocast(device, bf16):
                loss, n = causal_lm_loss(model, batch, positions=positions)
            losses.append((loss, n))  # read back after the last batch: no sync per batch
    finally:
        model.train(was_training)
    if not losses:
        raise ValueError("evaluate_loss got no batches; pass a non-empty list of batches.")
    return sum(float(loss) * n for loss, n in losses) / sum(n for _, n in losses)
