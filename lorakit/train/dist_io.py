"""Adapters and memory under ``torch.distributed``: save and load on every rank, memory per GPU.

Under FSDP the LoRA tensors of a model are sharded: each rank holds a piece of every A and B (a
``DTensor``), so no rank alone can write the adapter. :func:`save_adapter` is therefore called
on every rank: it gathers the LoRA tensors only (a few MB, never the frozen base) and rank 0
writes the same folder :func:`lorakit.save_adapter` writes, which loads into a plain model.
:func:`load_adapter` is called on every rank too: into a plain model it is
:func:`lorakit.load_adapter`; into an FSDP-sharded one, each rank keeps its piece.

:func:`memory_per_gpu` is the formula of what one GPU holds for the weights, the gradients and
AdamW's state under DDP and FSDP; :func:`communication_per_step` what one GPU sends per step.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from .step import _Forward


def _dtensor_type():
    from torch.distributed.tensor import DTensor

    return DTensor


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def _plain(model: nn.Module) -> nn.Module:
    """The user's model inside DDP (``.module``) and lorakit's forward wrapper (``.model``)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(model, _Forward):
            model = model.model
        else:
            return model


def _owner(model: nn.Module, key: str) -> tuple[nn.Module, str]:
    prefix, _, attr = key.rpartition(".")
    return (model.get_submodule(prefix) if prefix else model), attr


def is_sharded(model: nn.Module) -> bool:
    """Whether any parameter of ``model`` is a ``DTensor`` (FSDP2 has sharded it)."""
    DTensor = _dtensor_type()
    return any(isinstance(p, DTensor) for p in model.parameters())


def save_adapter(model: nn.Module, path: str | os.PathLike, config=None) -> Path:
    """:func:`lorakit.save_adapter`, called on **every** rank; rank 0 writes, all return the folder.

    Under FSDP the LoRA tensors are gathered (a collective, hence every rank) and rank 0 writes
    them as one plain adapter, which :func:`lorakit.load_adapter` loads into a model that was
    never sharded. Under DDP (or without a process group) rank 0 saves its replica. The ranks
    wait for the write to finish; an error on rank 0 is raised on every rank.
    """
    from lorakit.checkpoint import save_adapter as save_plain
    from lorakit.lora.apply import lora_state_dict

    model = _plain(model)
    if not _active():
        return save_plain(model, path, config)
    lora_cfg = config if config is not None else getattr(model, "_lorakit_config", None)
    keys = sorted(lora_state_dict(model, getattr(lora_cfg, "bias", "none")))
    DTensor = _dtensor_type()
    swapped: list[tuple[nn.Module, str, nn.Parameter]] = []
    error = [None]
    try:
        for key in keys:  # the same order on every rank: full_tensor() is a collective
            module, attr = _owner(model, key)
            param = module._parameters.get(attr)
            if isinstance(param, DTensor):
                full = param.full_tensor().detach()
                if dist.get_rank() == 0:  # the plain tensor in its place while rank 0 writes
                    swapped.append((module, attr, param))
                    module._parameters[attr] = nn.Parameter(full, param.requires_grad)
        if dist.get_rank() == 0:
            try:
                save_plain(model, path, config)
            except Exception as err:  # noqa: BLE001 - every rank must hear of it, not wait forever
                error[0] = f"{type(err).__name__}: {err}"
    finally:
        for module, attr, param in swapped:
            module._parameters[attr] = param
    dist.broadcast_object_list(error, src=0)
    if error[0] is not None:
        raise RuntimeError(f"save_adapter failed on rank 0: {error[0]}")
    return Path(path)


def load_adapter(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """:func:`lorakit.load_adapter` on every rank, into a plain model or an FSDP-sharded one.

    A plain model (before :func:`lorakit.train.train` shards it, or a DDP replica) gets the
    adapter as :func:`lorakit.load_adapter` gives it (LoRA applied first if it has none). An
    FSDP-sharded model must already have LoRA on the adapter's modules with its rank; every rank
    reads the file and keeps its piece of each tensor. Everything is checked first, so a wrong
    adapter leaves the model untouched.
    """
    from lorakit.adapter_meta import AdapterError, check_base
    from lorakit.checkpoint import load_adapter as load_plain
    from lorakit.checkpoint import read_adapter

    plain = _plain(model)
    if not is_sharded(plain):
        load_plain(plain, path)
        return model
    from torch.distributed.tensor import distribute_tensor

    meta, tensors = read_adapter(path)
    check_base(plain, meta)
    targets, wrong = {}, []
    for key, value in tensors.items():
        try:
            module, attr = _owner(plain, key)
        except AttributeError:
            module, attr = None, ""
        param = None if module is None else module._parameters.get(attr)
        if param is None or tuple(param.shape) != tuple(value.shape):
            wrong.append(key)
        else:
            targets[key] = param
    if wrong:
        raise AdapterError(
            f"Tensors {wrong[:4]} of the adapter do not fit this sharded model (a "
            "LoRA layer missing or of another rank); apply the adapter's LoRA "
            "settings before sharding, or load it into the plain model."
        )
    DTensor = _dtensor_type()
    with torch.no_grad():
        for key in sorted(targets):  # the same order on every rank
            param, value = targets[key], tensors[key]
            if isinstance(param, DTensor):
                value = value.to(param.to_local().device, param.dtype)
                param.copy_(distribute_tensor(value, param.device_mesh, param.placements))
            else:
                param.copy_(value)
    return model


def memory_per_gpu(
    total_params: int,
    trainable_params: int,
    world_size: int,
    strategy: str,
    block_params: int = 0,
    weight_bytes: int = 4,
    grad_bytes: int = 4,
    optimizer_bytes: int = 8,
) -> dict[str, float]:
    """Bytes one GPU holds for weights, gradients and optimizer state (activations not included).

    Parameters
    ----------
    total_params, trainable_params : Φ (all parameters) and Ψ (those with ``requires_grad``).
    world_size : N, the number of GPUs.
    strategy : ``"single"`` (one GPU), ``"ddp"`` (every GPU holds everything) or ``"fsdp"``
        (every GPU holds 1/N of everything, plus the gathered blocks).
    block_params : parameters of the largest FSDP unit (a transformer block): FSDP holds it
        whole while it runs, and the next one being gathered (so twice that, in weights and,
        during backward, in unsharded gradients of its trainable part, ignored here).
    weight_bytes, grad_bytes, optimizer_bytes : per number: fp32 weights and gradients (4),
        AdamW's two fp32 moments (8).

    Returns
    -------
    ``{"weights", "grads", "optimizer", "gathered", "total"}`` in bytes.
    """
    if strategy not in ("single", "ddp", "fsdp"):
        raise ValueError(f"strategy must be 'single', 'ddp' or 'fsdp', got {strategy!r}.")
    if world_size < 1 or not 0 <= trainable_params <= total_params:
        raise ValueError(
            "need world_size >= 1 and 0 <= trainable_params <= total_params, got "
            f"{world_size}, {trainable_params}, {total_params}."
        )
    share = 1.0 / world_size if strategy == "fsdp" else 1.0
    out = {
        "weights": total_params * weight_bytes * share,
        "grads": trainable_params * grad_bytes * share,
        "optimizer": trainable_params * optimizer_bytes * share,
        "gathered": 2.0 * block_params * weight_bytes if strategy == "fsdp" else 0.0,
    }
    out["total"] = sum(out.values())
    return out


def communication_per_step(
    total_params: int,
    trainable_params: int,
    world_size: int,
    strategy: str,
    weight_bytes: int = 4,
    grad_bytes: int = 4,
) -> dict[str, float]:
    """Bytes one GPU sends per optimizer step (ring collectives: a fraction (N-1)/N of the data
    per pass; an all-reduce is two passes, a reduce-scatter plus an all-gather).

    * ``"ddp"``: one all-reduce of the trainable gradients (Ψ numbers; under LoRA only A, B).
    * ``"fsdp"``: an all-gather of all weights (Φ, frozen ones included) before forward and
      again before backward, and a reduce-scatter of the trainable gradients (Ψ).

    Returns ``{"weights", "grads", "total"}`` in bytes.
    """
    if strategy not in ("ddp", "fsdp"):
        raise ValueError(f"strategy must be 'ddp' or 'fsdp', got {strategy!r}.")
    part = (world_size - 1) / world_size
    if strategy == "ddp":
        out = {"weights": 0.0, "grads": 2 * part * trainable_params * grad_bytes}
    else:
        out = {
            "weights": 2 * part * total_params * weight_bytes,
            "grads": part * trainable_params * grad_bytes,
        }
    out["total"] = out["weights"] + out["grads"]
    return out
