"""Presets and devices: one notebook serves a laptop, a GPU and CI.

``LORAKIT_PRESET`` picks the size of every experiment:

* ``ci``  -- tiny, seconds; what the test suite runs;
* ``cpu`` -- meaningful on a laptop CPU, minutes;
* ``gpu`` -- the full size, one GPU.

Unset, the preset is ``gpu`` when CUDA is available and ``cpu`` otherwise.

:data:`PAPER_E2E` is the paper's schedule for GPT-2 on E2E, the ``gpu`` preset of the
fine-tuning experiments (chapter 6, and the methods compared with it at the same budget).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import TypeVar

import numpy as np
import torch

PRESETS = ("ci", "cpu", "gpu")
T = TypeVar("T")

#: The paper's E2E schedule for GPT-2 (Hu et al. 2021, Appendix D.3 and Table 11): every train MR
#: with all its references (about 42k pairs), AdamW with weight decay 0.01, batch 8, 5 epochs,
#: a linear warm-up of 500 steps then linear decay, label smoothing 0.1, LoRA r = 4, alpha = 32,
#: dropout 0.1 on Wq, Wv at lr 2e-4; decoding with beam 10, length penalty 0.9 and
#: ``no_repeat_ngram_size`` 4 on the whole test split. The paper does not give full fine-tuning's
#: learning rate; 5e-5 is the usual one for all of GPT-2.
PAPER_E2E: dict = {
    "epochs": 5,
    "batch_size": 8,
    "warmup": 500,
    "label_smoothing": 0.1,
    "weight_decay": 0.01,
    "lr": {"lora": 2e-4, "full": 5e-5},
    "lora": {"r": 4, "alpha": 32, "targets": ["q", "v"], "dropout": 0.1},
    "beams": 10,
    "length_penalty": 0.9,
    "no_repeat_ngram_size": 4,
}


def get_preset() -> str:
    """Return the active preset name: ``LORAKIT_PRESET`` if set, else ``gpu``/``cpu`` by
    hardware."""
    name = os.environ.get("LORAKIT_PRESET", "").strip().lower()
    if not name:
        return "gpu" if torch.cuda.is_available() else "cpu"
    if name not in PRESETS:
        raise ValueError(
            f"LORAKIT_PRESET={name!r} is not a preset; use one of {', '.join(PRESETS)} "
            "(or unset it to pick by hardware)."
        )
    return name


def by_preset(ci: T, cpu: T, gpu: T, preset: str | None = None) -> T:
    """Pick the value for the active preset: ``by_preset(ci=2, cpu=50, gpu=500)``."""
    preset = preset or get_preset()
    return {"ci": ci, "cpu": cpu, "gpu": gpu}[preset]


def pick_device(prefer: str | None = None) -> torch.device:
    """The device to run on: ``prefer`` if given, else cuda, then mps, then cpu."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so that a run repeats."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Run the block with PyTorch's deterministic kernels (``enabled=False``: as things are).

    On a GPU some kernels sum in an order that varies from run to run: the backward of flash
    attention adds the query gradients of key blocks with atomic adds, for one. Training twice
    from the same seed then gives weights that differ in the last bits, and the differences grow
    with every step. Inside this block :func:`torch.use_deterministic_algorithms` picks kernels
    whose result is the same on every run on the same machine and software (an op with no such
    kernel raises an error that names it), and ``CUBLAS_WORKSPACE_CONFIG`` is set to ``:4096:8``
    if it is unset, as cuBLAS asks (it stays set afterwards: cuBLAS may read it only once). Memory
    that ``torch.empty`` hands out is not filled with NaN (deterministic mode's check for reads of
    unwritten memory): it costs a kernel per allocation and changes no correct result. PyTorch's
    two settings come back when the block ends.
    """
    if not enabled:
        yield
        return
    import torch.utils.deterministic as det

    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        det.fill_uninitialized_memory,
    )
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    det.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        det.fill_uninitialized_memory = before[2]


def describe() -> str:
    """One line saying which preset and device are active and why (for the top of each chapter)."""
    preset = get_preset()
    why = "LORAKIT_PRESET" if os.environ.get("LORAKIT_PRESET") else "picked by hardware"
    return f"preset: {preset} ({why}); device: {pick_device().type}; torch {torch.__version__}"
