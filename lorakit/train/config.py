"""The settings of :func:`lorakit.train.train` and what it returns."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field


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
    grad_clip : clip the global gradient norm to this value (``None`` or 0: no clipping, as
        Hugging Face's Trainer does for ``max_grad_norm <= 0``; a negative value is an error,
        since it would turn every step into gradient ascent).
    grad_accum : micro-batches per optimizer step. An epoch whose batch count is not a multiple
        of it ends with a shorter accumulation whose loss is still divided by ``grad_accum``
        (that last step is slightly smaller).
    bf16 : bf16 autocast; ``None`` means "on CUDA yes, elsewhere no".
    log_every : write a row of ``history`` every this many optimizer steps.
    seed : seeds dropout and everything else random inside the loop.
    compile : wrap the backbone in ``torch.compile`` (eager steps; right-padded batches are
        widened to a few lengths so that it compiles once per length, not once per batch).
    progress : show a tqdm progress bar.
    cuda_graphs : ``"auto"`` (default), ``True`` or ``False``. On a CUDA device, ``"auto"`` pads
        each batch to one of a few shapes and replays each step as a CUDA graph
        (:mod:`lorakit.train.graphed`): the same training, without the host cost of launching
        every kernel from Python. A model whose step cannot be captured is said once and trains
        eagerly; with ``compile=True`` it compiles instead (the compiled step is not captured).
        ``True`` insists (an error where graphs cannot be used); ``False`` trains eagerly.
        Elsewhere (CPU, MPS) training is eager whatever the setting.
    cast_frozen : opt-in; with bf16 autocast on, store the *frozen* weights of the linear layers
        in bf16 before training (:func:`lorakit.lora.precision.cast_frozen_`). Autocast rounds
        those fp32 weights to bf16 before every matmul anyway, so the losses and gradients are
        bit-identical; what goes away is a cast kernel per weight per step, the bf16 copy each
        matmul kept for backward, and half of those weights' memory. It changes the model in
        place, for good: afterwards run it under bf16 autocast (``lorakit.evaluate`` does on
        CUDA). Ignored when autocast is off, and a no-op for a model with no frozen linear weight
        (full fine-tuning).
    distributed : ``"auto"`` (default), ``"ddp"``, ``"fsdp"`` or ``"none"``: how ranks started by
        ``torchrun`` share the training (:mod:`lorakit.train.distributed`). ``"auto"`` is DDP
        under a process group of two or more ranks and one process otherwise; ``"none"`` trains
        this process alone whatever the group. Under DDP or FSDP every rank is given the same
        global batches and trains on its rows of each; the steps run eagerly (no CUDA graphs).
    deterministic : train with PyTorch's deterministic kernels
        (:func:`lorakit.presets.deterministic_algorithms`), so that two runs with the same seed on
        the same machine and software give bit-identical weights. Off by default: on a GPU some
        of those kernels are slower (flash attention's backward, for one).
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
    cast_frozen: bool = False
    cuda_graphs: bool | str = "auto"
    distributed: str = "auto"
    deterministic: bool = False

    def __post_init__(self) -> None:
        def whole(name: str, low: int, none_ok: bool = False) -> None:
            v = getattr(self, name)
            if v is None and none_ok:
                return
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < low:
                raise ValueError(
                    f"TrainConfig.{name} must be a whole number >= {low}"
                    f"{' or None' if none_ok else ''}, got {v!r}."
                )

        def number(name: str, low: float, low_ok: bool, high: float | None = None) -> None:
            v = getattr(self, name)
            ok = (
                isinstance(v, numbers.Real)
                and not isinstance(v, bool)
                and math.isfinite(v)
                and (v >= low if low_ok else v > low)
                and (high is None or v < high)
            )
            if not ok:
                rng = f"{'>=' if low_ok else '>'} {low:g}" + (f" and < {high:g}" if high else "")
                raise ValueError(f"TrainConfig.{name} must be a finite number {rng}, got {v!r}.")

        if self.cuda_graphs not in (True, False, "auto"):
            raise ValueError(
                f"TrainConfig.cuda_graphs must be 'auto', True or False, got {self.cuda_graphs!r}."
            )
        if self.distributed not in ("auto", "ddp", "fsdp", "none"):
            raise ValueError(
                f"TrainConfig.distributed must be 'auto', 'ddp', 'fsdp' or 'none', "
                f"got {self.distributed!r}."
            )
        number("lr", 0.0, False)
        number("weight_decay", 0.0, True)
        number("label_smoothing", 0.0, True, 1.0)
        if self.grad_clip is not None:
            number("grad_clip", 0.0, True)  # 0 means no clipping, as None; < 0 would ascend
        whole("epochs", 1)
        whole("max_steps", 1, none_ok=True)
        whole("warmup_steps", 0)
        whole("grad_accum", 1)
        whole("log_every", 1)
        if not isinstance(self.seed, numbers.Integral) or isinstance(self.seed, bool):
            raise ValueError(f"TrainConfig.seed must be a whole number, got {self.seed!r}.")
        for flag in ("compile", "progress", "cast_frozen", "deterministic"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(
                    f"TrainConfig.{flag} must be True or False, got {getattr(self, flag)!r}."
                )
        if self.bf16 is not None and not isinstance(self.bf16, bool):
            raise ValueError(f"TrainConfig.bf16 must be True, False or None, got {self.bf16!r}.")


@dataclass
class TrainResult:
    """What :func:`train` returns.

    ``history`` rows: ``{step, epoch, loss, lr, tokens_per_s, seconds}`` (loss averaged over the
    logged window, ``seconds`` its wall time, evaluation excluded); ``evals`` rows:
    ``{epoch, step, eval_loss}``; ``peak_mem_mb`` is ``torch.cuda.max_memory_allocated`` in MiB
    on CUDA and ``None`` elsewhere; ``step_time_s`` is the mean wall time of an optimizer step
    (excluding the first, which pays for warm-up);
    ``cuda_graphs`` says how the steps ran: ``None`` when eagerly by choice or device, else
    ``{"graphs": captured graphs, "capture_s": seconds spent capturing, "eager_batches": batches
    the graphs could not take, "fallback": why the run went eager, or None}``; ``distributed``
    is ``None`` for one process, else ``{"mode", "world_size", "backend"}`` (the ``history`` and
    ``evals`` losses and the token counts are then those of all ranks together).
    """

    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    tokens_seen: int = 0
    wall_s: float = 0.0
    peak_mem_mb: float | None = None
    steps: int = 0
    step_time_s: float | None = None
    cuda_graphs: dict | None = None
    distributed: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)
