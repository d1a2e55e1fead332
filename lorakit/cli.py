"""Argument types for lorakit's command lines: bad values are refused by argparse, before any work.

Use them as ``type=`` of ``add_argument``::

    parser.add_argument("--steps", type=positive_int)
    parser.add_argument("--device", type=device)
    parser.add_argument("--out", type=writable_folder)

Each raises ``argparse.ArgumentTypeError`` with what was wrong and what to pass instead, so the
command exits with status 2 and a usage line, without loading a model or writing a file.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path


def _number(text: str, kind: type) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not {'an integer' if kind is int else 'a number'}"
        ) from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (steps, batch size, jobs, ...)."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (warm-up steps, sizes that may be empty)."""
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, timeouts)."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def probability(text: str) -> float:
    """A number in [0, 1) (dropout)."""
    value = _number(text, float)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(
            f"must be in [0, 1), got {text} (e.g. 0.1 for 10% dropout)"
        )
    return value


def device(text: str) -> str:
    """A torch device that exists on this machine (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    import torch

    try:
        dev = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a device; use cpu, cuda, cuda:N or mps"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(
                f"{text}: CUDA is not available on this machine (no GPU, or a CPU-only torch); "
                "use --device cpu, or leave --device out to pick the hardware"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{text}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"numbered 0..{torch.cuda.device_count() - 1}"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text}: MPS is not available on this machine; use cpu")
    return text


def check_writable(folder: Path) -> None:
    """Raise ``argparse.ArgumentTypeError`` unless ``folder`` is, or can become, a writable folder.

    Nothing is created: the nearest existing ancestor must be a folder where a file can be made
    (probed with a temporary file that is removed at once).
    """
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise argparse.ArgumentTypeError(
            f"{folder}: {probe} is a file, not a folder; choose another path"
        )
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise argparse.ArgumentTypeError(
            f"{folder} cannot be written ({e.strerror or e}); choose a folder you can write to"
        ) from None


def writable_folder(text: str) -> str:
    """A folder for outputs that exists and is writable, or can be created (checked, not
    created)."""
    check_writable(Path(text))
    return text


def writable_output(text: str) -> str:
    """A folder, or a ``.json`` file whose folder is writable (the benchmarks' ``--out``)."""
    path = Path(text)
    if path.suffix == ".json":
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a folder; name a .json file or a folder")
        check_writable(path.parent)
    else:
        check_writable(path)
    return text
