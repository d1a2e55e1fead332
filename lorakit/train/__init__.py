"""One training loop for every method: LoRA, full fine-tuning, the baselines, pretraining.

The loop follows the paper's GPT-2 recipe (Hu et al. 2021, Appendix D.3): AdamW, a linear warm-up
followed by a linear decay of the learning rate, label smoothing, gradient clipping, bf16 autocast
on a GPU. It optimises only the parameters with ``requires_grad``, so the *method* (which weights
are trainable) is decided before the loop and the loop itself is the same for all of them.

Batches are dicts ``{"input_ids": (B, T) long, "attention_mask": (B, T), "labels": (B, T) long}``;
``labels`` holds ``-100`` where no loss is wanted (the prompt, padding). The loop shifts: the
model's output at position ``t`` predicts ``labels[:, t + 1]``.

Modules:

* :mod:`lorakit.train.config` -- :class:`TrainConfig` (the settings), :class:`TrainResult`;
* :mod:`lorakit.train.loop` -- :func:`train`, :func:`evaluate_loss`;
* :mod:`lorakit.train.optim` -- AdamW's parameter groups and the schedule
  :func:`linear_warmup_decay`;
* :mod:`lorakit.train.eager` and :mod:`lorakit.train.graphed` -- the steps the loop drives: eager,
  or replayed as CUDA graphs on a GPU;
* :mod:`lorakit.train.step` -- the batch preparation and autocast that every kind of step
  shares (eager, CUDA-graphed, distributed);
* :mod:`lorakit.train.loss` -- :func:`causal_lm_loss` (the LM head only on labelled rows, no host
  syncs) and :func:`linear_cross_entropy` (the head and the loss chunk by chunk);
* :mod:`lorakit.train.state` -- :func:`save_trainable` / :func:`load_trainable` (a safetensors
  file of the ``requires_grad`` parameters only).
* :mod:`lorakit.train.graph` -- :class:`~lorakit.train.graph.CUDAGraphStep`, a whole training step
  captured in a CUDA graph and replayed (fixed-shape batches on a GPU).
"""

from .config import TrainConfig, TrainResult
from .loop import evaluate_loss, train
from .loss import (
    IGNORE_INDEX,
    LabelPositions,
    causal_lm_loss,
    label_positions,
    linear_cross_entropy,
)
from .optim import linear_warmup_decay
from .state import load_trainable, save_trainable

__all__ = [
    "IGNORE_INDEX",
    "LabelPositions",
    "TrainConfig",
    "TrainResult",
    "causal_lm_loss",
    "evaluate_loss",
    "label_positions",
    "linear_cross_entropy",
    "linear_warmup_decay",
    "load_trainable",
    "save_trainable",
    "train",
]
