"""One training loop for every method: LoRA, full fine-tuning, the baselines, pretraining.

The loop follows the paper's GPT-2 recipe (Hu et al. 2021, Appendix D.2): AdamW, a linear warm-up
followed by a linear decay of the learning rate, label smoothing, gradient clipping, bf16 autocast
on a GPU. It optimises only the parameters with ``requires_grad``, so the *method* (which weights
are trainable) is decided before the loop and the loop itself is the same for all of them.

Batches are dicts ``{"input_ids": (B, T) long, "attention_mask": (B, T), "labels": (B, T) long}``;
``labels`` holds ``-100`` where no loss is wanted (the prompt, padding). The loop shifts: the
model's output at position ``t`` predicts ``labels[:, t + 1]``.

Why the loss is computed the way it is: for GPT-2 the vocabulary has 50,257 entries, so the
full logits tensor of a batch (B·T·V floats, in fp32 for a stable softmax) costs more memory and
time than everything LoRA adds. :func:`causal_lm_loss` therefore runs the backbone, keeps the
hidden states of the positions that carry a label, and applies the LM head to those rows only,
chunk by chunk, never holding all the logits (:func:`linear_cross_entropy`).

Also here: :func:`evaluate_loss` (token-weighted NLL) and :func:`save_trainable` /
:func:`load_trainable` (a safetensors file of the ``requires_grad`` parameters only).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lorakit.presets import pick_device, seed_everything

IGNORE_INDEX = -100
CHUNK_ELEMENTS = 2**26  # logits per chunk in linear_cross_entropy (256 MiB in fp32)


@dataclass
class TrainConfig:
    """Settings of :func:`train`. Defaults are the paper's LoRA settings where it gives them.

    Attributes
    ----------
    lr : peak learning rate (reached after ``warmup_steps``, then decays linearly to 0).
    weight_decay : AdamW weight decay, applied to matrices only (not biases or LayerNorm).
    epochs : passes over ``train_batches``.
    max_steps : stop after this many optimizer steps (``None``: run all epochs).
    warmup_steps : linear warm-up length in optimizer steps.
    label_smoothing : label smoothing of the training loss (the paper uses 0.1).
    grad_clip : clip the global gradient norm to this value (``None`` or 0: no clipping).
    grad_accum : micro-batches per optimizer step.
    bf16 : bf16 autocast; ``None`` means "on CUDA yes, elsewhere no".
    log_every : write a row of ``history`` every this many optimizer steps.
    seed : seeds dropout and everything else random inside the loop.
    compile : wrap the backbone in ``torch.compile``.
    progress : show a tqdm progress bar.
    """

    lr: float = 2e-4
    weight_decay: float = 0.01
    epochs: int = 1
    max_steps: int | None = None
    warmup_steps: int = 0
    label_smoothing: float = 0.0
    grad_clip: float | None = 1.0
    grad_accum: int = 1
    bf16: bool | None = None
    log_every: int = 10
    seed: int = 0
    compile: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}.")
        if self.epochs < 1:
            raise ValueError(f"TrainConfig.epochs must be >= 1, got {self.epochs}.")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"TrainConfig.max_steps must be >= 1 or None, got {self.max_steps}.")
        if self.grad_accum < 1:
            raise ValueError(f"TrainConfig.grad_accum must be >= 1, got {self.grad_accum}.")
        if self.warmup_steps < 0 or self.log_every < 1:
            raise ValueError("TrainConfig.warmup_steps must be >= 0 and log_every >= 1.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(
                f"TrainConfig.label_smoothing must be in [0, 1), got {self.label_smoothing}.")


@dataclass
class TrainResult:
    """What :func:`train` returns.

    ``history`` rows: ``{step, epoch, loss, lr, tokens_per_s}`` (loss averaged over the logged
    window); ``evals`` rows: ``{epoch, step, eval_loss}``; ``peak_mem_mb`` is
    ``torch.cuda.max_memory_allocated`` in MiB on CUDA and ``None`` elsewhere; ``step_time_s`` is
    the mean wall time of an optimizer step (excluding the first, which pays for warm-up).
    """

    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    tokens_seen: int = 0
    wall_s: float = 0.0
    peak_mem_mb: float | None = None
    steps: int = 0
    step_time_s: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _backbone_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """The (backbone, LM head) of an HF causal LM, or ``None`` when the model does not split so."""
    get_head = getattr(model, "get_output_embeddings", None)
    backbone = getattr(model, "base_model", None)
    if get_head is None or backbone is None or backbone is model:
        return None
    head = get_head()
    if not isinstance(head, nn.Module):
        return None
    return backbone, head


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """``cross_entropy(hidden @ weight.T, target)`` (mean) without keeping the (n, V) logits.

    The rows are processed in chunks; each chunk's logits live only long enough to give its loss
    and its gradient, which is computed right away (softmax minus the smoothed one-hot, over n)
    and pushed through the head: ``grad_hidden = g @ W``, ``grad_W += g.T @ hidden``. Backward only
    scales these by the incoming gradient. Memory: one (chunk, V) block instead of several (n, V)
    fp32 tensors; the matmuls run in the autocast dtype, the softmax in fp32, as autograd would.
    """

    @staticmethod
    def forward(ctx, hidden, weight, target, smoothing, need_grad, cdt):
        n, vocab = hidden.shape[0], weight.shape[0]
        need_h = need_grad and hidden.requires_grad
        need_w = need_grad and weight.requires_grad
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) \
            if need_w else None
        w = weight.to(cdt)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        chunk = max(1, CHUNK_ELEMENTS // vocab)
        for s in range(0, n, chunk):
            h, t = hidden[s:s + chunk].to(cdt), target[s:s + chunk]
            z = (h @ w.T).float()  # (c, V)
            lse = torch.logsumexp(z, dim=-1)
            row = lse - z.gather(1, t[:, None]).squeeze(1)
            if smoothing:
                row = (1 - smoothing) * row + smoothing * (lse - z.mean(dim=-1))
            total += row.sum()
            if need_h or need_w:
                g = z.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
                g.scatter_add_(1, t[:, None], g.new_full((len(t), 1), smoothing - 1.0))
                if smoothing:
                    g.sub_(smoothing / vocab)
                g = g.mul_(1.0 / n).to(cdt)
                if need_h:
                    grad_h[s:s + chunk] = (g @ w).to(hidden.dtype)
                if need_w:
                    grad_w += (g.T @ h).float()
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        return total / n

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_out if grad_h is not None else None
        gw = (grad_w * grad_out).to(ctx.weight_dtype) if grad_w is not None else None
        return gh, gw, None, None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor,
                         label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of the logits ``hidden @ weight.T`` against ``target``, chunked.

    Parameters
    ----------
    hidden : (n, d) the final hidden states of the labelled positions.
    weight : (V, d) the LM head's weight (GPT-2: tied to the token embedding).
    target : (n,) the next tokens.

    Same value and gradients as ``F.cross_entropy(F.linear(hidden, weight).float(), target,
    label_smoothing=...)``, without materialising the (n, V) logits in fp32.
    """
    dev = hidden.device.type
    cdt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else hidden.dtype
    need = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    with torch.autocast(dev, enabled=False):
        fn = _ChunkedLinearCrossEntropy
        loss = fn.apply(hidden, weight, target, float(label_smoothing), need, cdt)
    return loss


def causal_lm_loss(model: nn.Module, batch: Mapping[str, torch.Tensor],
                   label_smoothing: float = 0.0, backbone: nn.Module | None = None
                   ) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy over the positions whose label is not ``-100``.

    Parameters
    ----------
    model : an HF causal LM (``GPT2LMHeadModel`` and the like) or any module whose output has
        ``.logits`` (B, T, V) or is that tensor.
    batch : ``input_ids`` (B, T), ``attention_mask`` (B, T), ``labels`` (B, T) with -100 = ignore.
    label_smoothing : as in :func:`torch.nn.functional.cross_entropy`.
    backbone : optional replacement for ``model.base_model`` (e.g. its ``torch.compile`` wrapper).

    Returns
    -------
    (loss, n) : the mean loss (a scalar tensor, fp32) and the number n of label tokens.
    When the model splits into backbone + a bias-free linear LM head, the head runs on the n
    labelled rows only, (n, d) -> (n, V), chunk by chunk (:func:`linear_cross_entropy`).
    """
    input_ids = batch["input_ids"]
    attention_mask = batch.get("attention_mask")
    target = batch["labels"][:, 1:]
    keep = target != IGNORE_INDEX  # (B, T-1)
    n = int(keep.sum())
    if n == 0:
        raise ValueError("The batch has no label != -100, so there is no loss to compute; "
                         "check the collation (labels -100 only on the prompt and padding).")
    parts = _backbone_and_head(model)
    if parts is not None:
        body, head = parts
        body = backbone if backbone is not None else body
        hidden = body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden.last_hidden_state
        hidden = hidden[:, :-1][keep]  # (n, d)
        if type(head) is nn.Linear and head.bias is None:
            return linear_cross_entropy(hidden, head.weight, target[keep], label_smoothing), n
        logits = head(hidden)  # (n, V)
    else:
        out = model(input_ids=input_ids, attention_mask=attention_mask)
        logits = getattr(out, "logits", out)[:, :-1][keep]
    loss = F.cross_entropy(logits.float(), target[keep], label_smoothing=label_smoothing)
    return loss, n


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


def _to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    for key in ("input_ids", "labels"):
        if key not in batch:
            raise KeyError(f"A training batch needs {key!r}; it has {sorted(batch)}. Build batches "
                           "with lorakit.data (or as dicts of input_ids, attention_mask, labels).")
    return {k: v.to(device, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}


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


def train(model: nn.Module, train_batches: Iterable[Mapping[str, torch.Tensor]], cfg: TrainConfig,
          eval_batches: Iterable[Mapping[str, torch.Tensor]] | None = None,
          device: str | torch.device | None = None) -> TrainResult:
    """Train the ``requires_grad`` parameters of ``model`` in place.

    Parameters
    ----------
    model : a causal LM; moved to ``device``.
    train_batches : re-iterable of batch dicts (see module docstring), iterated once per epoch.
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
    groups = _param_groups(model, cfg.weight_decay)
    total = _total_steps(train_batches, cfg)
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8,
                            fused=device.type == "cuda")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_warmup_decay(cfg.warmup_steps, total))
    params = [p for g in groups for p in g["params"]]
    parts = _backbone_and_head(model)
    backbone = None
    if cfg.compile:
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
            mean_loss = float(win_loss) / win_micro  # float() syncs the device
            now = time.perf_counter()
            result.history.append({
                "step": step, "epoch": epoch, "loss": mean_loss, "lr": sched.get_last_lr()[0],
                "tokens_per_s": float(win_tokens) / max(now - win_start, 1e-9)})
            bar.set_postfix(loss=f"{mean_loss:.3f}")
            win_loss = torch.zeros((), device=device)
            win_micro, win_tokens, win_start = 0, 0, now

    model.train()
    for epoch in range(1, cfg.epochs + 1):
        micro = 0
        for batch in train_batches:
            batch = _to_device(batch, device)
            with _autocast(device, bf16):
                loss, _ = causal_lm_loss(model, batch, cfg.label_smoothing, backbone)
            (loss / cfg.grad_accum).backward()
            win_loss += loss.detach()
            win_micro += 1
            mask = batch.get("attention_mask")
            ntok = mask.sum() if mask is not None else batch["input_ids"].numel()
            win_tokens += ntok  # a device tensor: no sync per step
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
                                 "eval_loss": evaluate_loss(model, eval_batches, device)})
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
    result.tokens_seen = int(seen)
    if len(step_marks) >= 2:
        result.step_time_s = (step_marks[-1] - step_marks[0]) / (len(step_marks) - 1)
    model.eval()
    return result


@torch.no_grad()
def evaluate_loss(model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]],
                  device: str | torch.device | None = None) -> float:
    """Mean next-token NLL over all label tokens of ``batches`` (no label smoothing).

    Token-weighted: every label token counts once, however the tokens are spread over batches.
    The model's train/eval mode is restored afterwards. ``exp`` of the result is the perplexity.
    """
    device = pick_device(None if device is None else str(device))
    bf16 = device.type == "cuda"
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for batch in batches:
            batch = _to_device(batch, device)
            with _autocast(device, bf16):
                loss, n = causal_lm_loss(model, batch)
            total += float(loss) * n
            count += n
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate_loss got no batches; pass a non-empty list of batches.")
    return total / count


def save_trainable(model: nn.Module, path: str | Path) -> Path:
    """Save only the ``requires_grad`` parameters of ``model`` to a safetensors file.

    Returns the path written. For a LoRA model this is the adapter (a few MB at most); for full
    fine-tuning it is the whole model.
    """
    from safetensors.torch import save_file

    tensors = {name: p.detach().to("cpu").contiguous()
               for name, p in model.named_parameters() if p.requires_grad}
    if not tensors:
        raise ValueError("The model has no trainable parameter to save; "
                         "did you freeze everything?")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def load_trainable(model: nn.Module, path: str | Path) -> None:
    """Load a file written by :func:`save_trainable` into the ``requires_grad`` params of ``model``.

    Every name and shape is checked before anything is copied, so on a mismatch the model is left
    untouched and the error lists what differs.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No trainable-parameter file at {path}; "
                                "write one with lorakit.train.save_trainable(model, path).")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err}); "
                         "it may be truncated or of another format.") from err
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(set(params) - set(tensors))
    unexpected = sorted(set(tensors) - set(params))
    wrong = [f"{n}: file {tuple(tensors[n].shape)} vs model {tuple(params[n].shape)}"
             for n in sorted(set(params) & set(tensors)) if tensors[n].shape != params[n].shape]
    if missing or unexpected or wrong:
        lines = [f"{path} does not match the model's trainable parameters:"]
        if missing:
            lines.append(f"  missing in file ({len(missing)}): {missing[:5]}")
        if unexpected:
            lines.append(f"  not trainable in model ({len(unexpected)}): {unexpected[:5]}")
        if wrong:
            lines.append(f"  shape mismatch ({len(wrong)}): {wrong[:5]}")
        lines.append("Apply the same method (targets, rank) to the same base model before loading.")
        raise ValueError("\n".join(lines))
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(tensors[name].to(p.dtype))
