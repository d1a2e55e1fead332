"""What every baseline shares: the report it returns, GPT-2 checks, freezing.

Parameters are counted by :func:`lorakit.count_parameters`, the one counter of the package.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lorakit.lora import count_parameters

METHOD_ATTR = (
    "_lorakit_method"  # set on the model by every method: {"method": name, "config": {...}}
)

Batch = Mapping[str, torch.Tensor]


@dataclass
class MethodReport:
    """What a method did to the model.

    Attributes
    ----------
    method : the method's name in :data:`lorakit.baselines.METHODS`.
    trainable, total : parameter counts after applying it (shared tensors counted once).
    formula : the paper's count for this configuration (section 5.1), to compare with ``trainable``;
        ``None`` when the paper gives no formula (BitFit, FT-Top2, full fine-tuning).
    formula_text : the formula written out, e.g. ``"L_Adpt*(2*d*r + r + d) + 2*L_LN*d"``.
    modules : names of the modules the method added or made trainable.
    config : the keyword arguments it was applied with (JSON-friendly; enough to apply it again).
    prepare_batch : maps a collated batch to what this model needs (identity except for the prefix
        methods, which insert their special tokens; see :mod:`lorakit.baselines.prompt`).
    """

    method: str
    trainable: int
    total: int
    formula: int | None
    formula_text: str
    modules: list[str]
    config: dict[str, Any]
    prepare_batch: Callable[[Batch], dict[str, torch.Tensor]] = field(
        default=lambda batch: dict(batch), repr=False
    )

    def wrap_batches(self, batches: Iterable[Batch]) -> PreparedBatches:
        """A re-iterable view of ``batches`` with :attr:`prepare_batch` applied lazily."""
        return PreparedBatches(batches, self.prepare_batch)

    def __str__(self) -> str:
        pct = 100.0 * self.trainable / max(self.total, 1)
        text = (
            f"{self.method}: trainable {self.trainable:,} of {self.total:,} parameters ({pct:.3f}%)"
        )
        if self.formula is not None:
            text += f"; paper formula {self.formula_text} = {self.formula:,}"
        return text


class PreparedBatches:
    """Re-iterable ``map(prepare, batches)`` that keeps ``len()`` (the training loop needs both)."""

    def __init__(self, batches: Iterable[Batch], prepare: Callable[[Batch], dict]) -> None:
        self.batches, self.prepare = batches, prepare

    @property
    def batch_size(self) -> int:
        """The wrapped batches' ``batch_size`` (1 if they do not say): the training loop pads
        every batch to it when it replays the steps as CUDA graphs."""
        return int(getattr(self.batches, "batch_size", 1))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return (self.prepare(b) for b in self.batches)

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]


def gpt2_parts(model: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
    """``(transformer, blocks)`` of an HF GPT-2 (``GPT2LMHeadModel`` or ``GPT2Model``).

    Raises
    ------
    TypeError
        If ``model`` is not laid out like HF GPT-2 (``transformer.h``, ``wte``, ``ln_f``).
    """
    transformer = getattr(model, "transformer", model)
    blocks = getattr(transformer, "h", None)
    if (
        not isinstance(blocks, nn.ModuleList)
        or not hasattr(transformer, "wte")
        or not hasattr(transformer, "ln_f")
    ):
        raise TypeError(
            f"The baselines are written for HF GPT-2 (GPT2LMHeadModel or GPT2Model), got "
            f"{type(model).__name__}; build the model with transformers.GPT2LMHeadModel."
        )
    return transformer, blocks


def check_fresh(model: nn.Module, method: str) -> None:
    """Refuse a second method on the same model (the counts and freezing would be meaningless)."""
    gpt2_parts(model)
    applied = getattr(model, METHOD_ATTR, None)
    if applied is None and getattr(model, "_lorakit_config", None) is not None:
        applied = {"method": "lora"}  # apply_lora was called directly
    if applied is not None:
        raise ValueError(
            f"This model already carries the method {applied['method']!r}; cannot "
            f"apply {method!r} on top of it. Build (or reload) a fresh base model for "
            "each method."
        )


def check_positive_int(value: Any, name: str, hint: str) -> None:
    """Raise a ``ValueError`` naming ``name`` (and how to fix it) unless ``value`` is an int > 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}; {hint}")


def freeze_all(model: nn.Module) -> None:
    """Set ``requires_grad=False`` on every parameter of ``model``."""
    for p in model.parameters():
        p.requires_grad_(False)


def finish(
    model: nn.Module,
    method: str,
    config: dict[str, Any],
    modules: list[str],
    formula: int | None,
    formula_text: str,
    prepare_batch: Callable[[Batch], dict] | None = None,
) -> MethodReport:
    """Mark the model as carrying ``method`` and build its report."""
    setattr(model, METHOD_ATTR, {"method": method, "config": dict(config)})
    trainable, total = count_parameters(model)
    report = MethodReport(method, trainable, total, formula, formula_text, modules, dict(config))
    if prepare_batch is not None:
        report.prepare_batch = prepare_batch
    return report


def applied_method(model: nn.Module) -> dict[str, Any] | None:
    """``{"method": name, "config": kwargs}`` of the method applied to ``model``, or ``None``."""
    return getattr(model, METHOD_ATTR, None)
