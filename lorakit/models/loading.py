"""``load_base``: the base model Φ0 -- real GPT-2, a local directory, or the offline base."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from lorakit.lora import count_parameters
from lorakit.models import offline
from lorakit.models.cache import verify_entry
from lorakit.models.gpt2 import guard_positions
from lorakit.models.hub import hub_offline, network_problem
from lorakit.models.info import BaseInfo, short_path, weights_sha256
from lorakit.models.pretrain import pretrain_base
from lorakit.models.specs import get_spec
from lorakit.models.tokenizer import describe_tokenizer
from lorakit.presets import get_preset, pick_device

HUB_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")


class BaseNotFoundError(FileNotFoundError):
    """A local model directory that does not exist or holds no model."""


class BaseCorruptError(ValueError):
    """A local model directory whose config or weights file is damaged (truncated, not JSON)."""


class BaseUnavailableError(RuntimeError):
    """Real GPT-2 cannot be loaded here (no network and not in the local Hugging Face cache)."""


def _in_hf_cache(name: str) -> str | None:
    """The repository id under which ``name`` sits in the local Hugging Face cache, if it does."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for repo in (name, f"openai-community/{name}"):
        try:
            if isinstance(try_to_load_from_cache(repo, "config.json"), str):
                return repo
        except Exception:  # noqa: BLE001 - a broken cache just means "not cached"
            pass
    return None


def _hub_info(source: str, name: str, model, tokenizer) -> BaseInfo:
    c = model.config
    return BaseInfo(
        source=source,
        name=name,
        n_params=count_parameters(model)[1],
        tokenizer=describe_tokenizer(tokenizer),
        vocab_size=len(tokenizer),
        config={
            "n_layer": c.n_layer,
            "n_embd": c.n_embd,
            "n_head": c.n_head,
            "n_positions": c.n_positions,
        },
    )


def _from_pretrained(where: str, local_only: bool):
    from transformers import AutoTokenizer, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(
        where, attn_implementation="sdpa", local_files_only=local_only
    )
    tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=local_only)
    if tokenizer.pad_token is None:  # GPT-2 has none; the course pads with <|endoftext|>
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def load_hub(name: str):
    """Real GPT-2 from the Hugging Face hub (or its local cache); fails fast when offline."""
    cached = _in_hf_cache(name)
    if not cached:
        if hub_offline():
            raise BaseUnavailableError(
                f"HF_HUB_OFFLINE=1 and {name!r} is not in the local Hugging Face cache"
            )
        problem = network_problem()
        if problem:
            raise BaseUnavailableError(problem)
    try:
        model, tokenizer = _from_pretrained(cached or name, local_only=cached is not None)
    except Exception as err:  # noqa: BLE001 - any hub failure is reported the same way
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise BaseUnavailableError(f"{type(err).__name__}: {first}") from err
    return model, tokenizer, _hub_info("hub", name, model, tokenizer)


def load_local(path: str | os.PathLike):
    """A GPT-2 saved with ``save_pretrained`` (model and tokenizer) in a local directory."""
    path = Path(path).expanduser()
    what = (
        "load_base takes 'auto', 'offline', one of "
        + ", ".join(map(repr, HUB_NAMES))
        + ", or a directory where model.save_pretrained(dir) and "
        "tokenizer.save_pretrained(dir) were written."
    )
    if not path.is_dir():
        raise BaseNotFoundError(f"No model directory at {path}. {what}")
    if not (path / "config.json").is_file():
        raise BaseNotFoundError(f"{path} has no config.json, so it holds no saved model. {what}")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError(f"a JSON {type(config).__name__}, not an object")
    except (ValueError, UnicodeDecodeError) as err:
        raise BaseCorruptError(
            f"{path / 'config.json'} is not a model config ({err}); the saved "
            "model is corrupt. Save it again with model.save_pretrained(dir)."
        ) from None
    model_type = config.get("model_type")
    if model_type != "gpt2":
        raise ValueError(
            f"{path} holds a {model_type!r} model; load_base loads GPT-2 models "
            "(model_type 'gpt2'). Load other models with transformers directly."
        )
    if not (
        (path / "tokenizer.json").is_file()
        or ((path / "vocab.json").is_file() and (path / "merges.txt").is_file())
    ):
        raise BaseNotFoundError(
            f"{path} has a model but no tokenizer (tokenizer.json, or "
            f"vocab.json + merges.txt). {what}"
        )
    try:
        model, tokenizer = _from_pretrained(str(path), local_only=True)
    except Exception as err:  # noqa: BLE001 - safetensors raises its own type
        first = " ".join(str(err).split())[:300]
        if type(err).__name__ == "SafetensorError" or "deserializ" in first:
            raise BaseCorruptError(
                f"{path}: a weights file cannot be read ({first}); it is truncated "
                "or corrupt. Save the model again with model.save_pretrained(dir)."
            ) from None
        if not isinstance(err, (OSError, ValueError)):
            raise
        raise BaseNotFoundError(
            f"{path} could not be loaded ({type(err).__name__}: {first}); "
            f"is the tokenizer saved there too? {what}"
        ) from err
    return model, tokenizer, _hub_info("local", str(path), model, tokenizer)


def load_offline(preset: str | None = None, cache_dir=None, verbose: bool = True):
    """The offline base for ``preset``: from the cache, or built now (and cached)."""
    preset = preset or get_preset()
    spec = get_spec(preset)
    sha = offline.corpus_sha256(spec.corpus_chars, cache_dir, verbose, spec.copy_text_fraction)
    entry = offline.base_entry(preset, sha, cache_dir)
    problem = verify_entry(entry)
    if problem is None:
        try:
            model, tokenizer, info, _ = offline.load_cached_base(entry)
            return model, tokenizer, info
        except Exception as err:  # noqa: BLE001 - any unreadable file means "rebuild"
            problem = f"{type(err).__name__}: {err}"
    if problem != "absent":
        print(
            f"lorakit: the cached offline base at {short_path(entry)} is incomplete or corrupt "
            f"({problem}); rebuilding it."
        )
    elif verbose:
        print(
            f"lorakit: building the offline base for preset {preset!r} (once; it is cached "
            f"in {short_path(entry.parent)})"
        )
    model, tokenizer, info, _ = pretrain_base(
        preset, cache_dir=cache_dir, save=True, verbose=verbose, progress=verbose
    )
    return model.cpu(), tokenizer, info


def load_base(
    name: str | os.PathLike = "auto",
    *,
    preset: str | None = None,
    device: str | torch.device | None = None,
    cache_dir=None,
    verbose: bool = True,
):
    """Load the base model Φ0 and its tokenizer.

    Parameters
    ----------
    name : ``"auto"`` (real GPT-2 if it can be had, else the offline base, with one printed
        notice saying why), ``"gpt2"``, ``"gpt2-medium"``, ``"gpt2-large"``, ``"gpt2-xl"``
        (from the hub or its local cache), ``"offline"`` (the course's own base), or
        a local directory written by ``save_pretrained``.
    preset : size of the offline base (default: the active preset).
    device : where to put the model (default :func:`lorakit.presets.pick_device`).
    cache_dir : the lorakit cache (default ``$LORAKIT_CACHE`` or ``~/.cache/lorakit``).
    verbose : print what is being built (the fallback and corrupt-cache notices always print).

    Returns
    -------
    (model, tokenizer, info)
        A ``GPT2LMHeadModel`` in eval mode (SDPA attention) that refuses inputs longer than its
        ``n_positions`` with a clear error, a ``PreTrainedTokenizerFast`` whose pad token is
        ``<|endoftext|>``, and a :class:`BaseInfo`.

    Raises
    ------
    BaseNotFoundError
        ``name`` is a directory that does not exist or holds no saved model.
    BaseCorruptError
        ``name`` is a directory whose ``config.json`` or weights file is damaged.
    BaseUnavailableError
        A GPT-2 name was asked for but it cannot be loaded (no network, not cached).
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name must be a string or path, got {type(name).__name__}.")
    key = os.fspath(name)
    dev = pick_device(None if device is None else str(device))
    if key == "auto":
        try:
            model, tokenizer, info = load_hub("gpt2")
        except BaseUnavailableError as err:
            notice = (
                f"real GPT-2 is not available ({err}): using the offline base instead, "
                "a GPT-2 pretrained by lorakit on English prose installed on this machine "
                "(chapter 5)."
            )
            print(f"lorakit: {notice}")
            model, tokenizer, info = load_offline(preset, cache_dir, verbose)
            info.notice = notice
    elif key == "offline":
        model, tokenizer, info = load_offline(preset, cache_dir, verbose)
    elif key in HUB_NAMES:
        try:
            model, tokenizer, info = load_hub(key)
        except BaseUnavailableError as err:
            raise BaseUnavailableError(
                f"Cannot load {key!r}: {err}. Connect to the internet once (it is then cached), "
                "or use load_base('offline') or load_base('auto')."
            ) from err
    else:
        model, tokenizer, info = load_local(key)
    info.weights_sha256 = weights_sha256(model)
    return guard_positions(model.to(dev).eval()), tokenizer, info
