"""The loop: :func:`train`, :func:`evaluate_loss`, the LR schedule and the batch preparation."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping

import torch
from torch import nn
from tqdm import tqdm

from lorakit.presets import pick_device, seed_everything

from .config import TrainConfig, TrainResult
from .loss import LabelPositions, backbone_and_head, causal_lm_loss, label_positions


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            # matrices get weight decay; biases and LayerNorm gains/shifts (1-D) do not
            (decay if p.ndim >= 2 else no_decay).append(p)
    if not decay and not no_decay:
        raise ValueError("The model has no parameter with requires_grad=True, so there is "
                         "nothing to train; apply a method first (e.g. lorakit.apply_lora).")
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def linear_warmup_decay(warmup_steps: int, total_steps: int):
    """LR multiplier: 0 -> 1 linearly over ``warmup_steps``, then 1 -> 0 linearly at ``total_steps``."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return factor


def _prepare(batch: Mapping[str, torch.Tensor], device: torch.device
             ) -> tuple[dict[str, torch.Tensor], LabelPositions, int]:
    """Move a batch to ``device`` after the host-side work: label positions and the token count.

    Both are read from the CPU tensors, so the step never waits for the GPU. An all-ones
    attention mask is dropped: it says nothing, and passing it can route SDPA attention to a
    slower masked kernel (and makes transformers check it on the device).
    """
    for key in ("input_ids", "labels"):
        if key not in batch:
            raise KeyError(f"A training batch needs {key!r}; it has {sorted(batch)}. Build batches "
                           "with lorakit.data (or as dicts of input_ids, attention_mask, labels).")
    positions = label_positions(batch["labels"])
    mask = batch.get("attention_mask")
    ntok = int(mask.sum()) if mask is not None else batch["input_ids"].numel()
    skip = {"attention_mask"} if mask is not None and bool(mask.all()) else set()
    moved = {k: v.to(device, non_blocking=True) for k, v in batch.items()
             if torch.is_tensor(v) and k not in skip}
    return moved, positions.to(device), ntok


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)


def _total_steps(batches: Iterable, cfg: TrainConfig) -> int:
    if cfg.max_steps is not None and not hasattr(batches, "__len__"):
        return cfg.max_steps
    if not hasattr(batches, "__len__"):
        raise TypeError("train_batches has no len(), so the schedule length is unknown; "
                        "pass a list (or a loader with __len__) or set TrainConfig.max_steps.")
    per_epoch = math.ceil(len(batches) / cfg.grad_accum)
    total = per_epoch * cfg.epochs
    return min(total, cfg.max_steps) if cfg.max_steps is not None else total


def _cast_frozen(model: nn.Module) -> list[str]:
    from lorakit.lora.precision import cast_frozen_, frozen_matmul_weights

    return cast_frozen_(model, torch.bfloat16) if frozen_matmul_weights(model) else []


def train(model: nn.Module, train_batches: Iterable[Mapping[str, torch.Tensor]], cfg: TrainConfig,
          eval_batches: Iterable[Mapping[str, torch.Tensor]] | None = None,
          device: str | torch.device | None = None) -> TrainResult:
    """Train the ``requires_grad`` parameters of ``model`` in place.

    Parameters
    ----------
    model : a causal LM; moved to ``device``.
    train_batches : re-iterable of batch dicts of CPU tensors (``input_ids`` (B, T),
        ``attention_mask`` (B, T), ``labels`` (B, T) with -100 = no loss), iterated once per
        epoch. The loop shifts: the output at position ``t`` predicts ``labels[:, t + 1]``.
    cfg : :class:`TrainConfig`.
    eval_batches : optional batches for :func:`evaluate_loss` at the end of each epoch.
    device : default :func:`lorakit.presets.pick_device`.

    Returns
    -------
    TrainResult
    """
    device = pick_device(None if device is None else str(device))
    bf16 = (device.type == "cuda") if cfg.bf16 is None else bool(cfg.bf16)
    seed_everything(cfg.seed)
    model.to(device)
    if cfg.cast_frozen and bf16:
        _cast_frozen(model)
    groups = _param_groups(model, cfg.weight_decay)
    total = _total_steps(train_batches, cfg)
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8,
                            fused=device.type == "cuda")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_warmup_decay(cfg.warmup_steps, total))
    params = [p for g in groups for p in g["params"]]
    backbone = None
    if cfg.compile:
        parts = backbone_and_head(model)
        if parts is None:
            raise ValueError("TrainConfig.compile needs an HF causal LM with base_model and an "
                             "LM head; set compile=False for this model.")
        backbone = torch.compile(parts[0])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    result = TrainResult()
    bar = tqdm(total=total, disable=not cfg.progress, desc="train", mininterval=1.0)
    start = time.perf_counter()
    win_loss = torch.zeros((), device=device)
    win_micro, win_tokens, win_start = 0, 0, start
    step_marks: list[float] = []
    step, epoch, seen = 0, 1, 0

    def optimizer_step() -> None:
        nonlocal step, win_loss, win_micro, win_tokens, win_start
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        step_marks.append(time.perf_counter())
        bar.update(1)
        if step % cfg.log_every == 0 or step == total:
            mean_loss = float(win_loss) / win_micro  # float() syncs, once per logged window
            now = time.perf_counter()
            result.history.append({
                "step": step, "epoch": epoch, "loss": mean_loss, "lr": sched.get_last_lr()[0],
                "tokens_per_s": win_tokens / max(now - win_start, 1e-9)})
            bar.set_postfix(loss=f"{mean_loss:.3f}")
            win_loss = torch.zeros((), device=device)
            win_micro, win_tokens, win_start = 0, 0, now

    model.train()
    for epoch in range(1, cfg.epochs + 1):
        micro = 0
        for batch in train_batches:
            batch, positions, ntok = _prepare(batch, device)
            with _autocast(device, bf16):
                loss, _ = causal_lm_loss(model, batch, cfg.label_smoothing, backbone, positions)
            (loss / cfg.grad_accum).backward()
            win_loss += loss.detach()
            win_micro += 1
            win_tokens += ntok
            seen += ntok
            micro += 1
            if micro % cfg.grad_accum == 0:
                optimizer_step()
                if step >= total:
                    break
        if micro % cfg.grad_accum and step < total:
            optimizer_step()  # the epoch's last, partial accumulation
        if eval_batches is not None:
            eval_start = time.perf_counter()
            result.evals.append({"epoch": epoch, "step": step,
                                 "eval_loss": evaluate_loss(model, eval_batches, device, bf16)})
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
    if len(step_marks) >= 2:
        result.step_time_s = (step_marks[-1] - step_marks[0]) / (len(step_marks) - 1)
    model.eval()
    return result


@torch.no_grad()
def evaluate_loss(model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]],
                  device: str | torch.device | None = None, bf16: bool | None = None) -> float:
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
