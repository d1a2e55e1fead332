"""Presets and devices: one notebook serves a laptop, a GPU and CI.

``LORAKIT_PRESET`` picks the size of every experiment:

* ``ci``  -- tiny, seconds; what the test suite runs;
* ``cpu`` -- meaningful on a laptop CPU, minutes;
* ``gpu`` -- the full size, one GPU.

Unset, the preset is ``gpu`` when CUDA is available and ``cpu`` otherwise.
"""

from __future__ import annotations

import os
import random
from typing import TypeVar

import numpy as np
import torch

PRESETS = ("ci", "cpu", "gpu")
T = TypeVar("T")


def get_preset() -> str:
    """Return the active preset name: ``LORAKIT_PRESET`` if set, else ``gpu``/``cpu`` by hardware."""
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


def describe() -> str:
    """One line saying which preset and device are active and why (for the top of each chapter)."""
    preset = get_preset()
    why = "LORAKIT_PRESET" if os.environ.get("LORAKIT_PRESET") else "picked by hardware"
    return f"preset: {preset} ({why}); device: {pick_device().type}; torch {torch.__version__}"
