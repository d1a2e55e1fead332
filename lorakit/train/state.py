"""Saving and loading only the trainable (``requires_grad``) parameters of a model.

For a LoRA model the file is the adapter (a few MB at most); for full fine-tuning it is the whole
model. The format is safetensors: a flat name -> tensor map, with nothing executable in it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lorakit.fileio import atomic_write


def save_trainable(model: nn.Module, path: str | Path) -> Path:
    """Save only the ``requires_grad`` parameters of ``model`` to a safetensors file.

    Returns the path written. For a LoRA model this is the adapter (a few MB at most); for full
    fine-tuning it is the whole model.
    """
    from safetensors.torch import save_file

    tensors = {
        name: p.detach().to("cpu").contiguous()
        for name, p in model.named_parameters()
        if p.requires_grad
    }
    if not tensors:
        raise ValueError("The model has no trainable parameter to save; did you freeze everything?")
    return atomic_write(path, lambda tmp: save_file(tensors, tmp))


def load_trainable(model: nn.Module, path: str | Path) -> None:
    """Load a file written by :func:`save_trainable` into the ``requires_grad`` params of ``model``.

    Every name and shape is checked before anything is copied, so on a mismatch the model is left
    untouched and the error lists what differs.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No trainable-parameter file at {path}; "
            "write one with lorakit.train.save_trainable(model, path)."
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(
            f"{path} is not a readable safetensors file ({err}); "
            "it may be truncated or of another format."
        ) from err
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(set(params) - set(tensors))
    unexpected = sorted(set(tensors) - set(params))
    wrong = [
        f"{n}: file {tuple(tensors[n].shape)} vs model {tuple(params[n].shape)}"
        for n in sorted(set(params) & set(tensors))
        if tensors[n].shape != params[n].shape
    ]
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
