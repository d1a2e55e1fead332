"""Building a GPT-2 with random weights from its shape: the one place that makes a GPT2Config."""

from __future__ import annotations

import torch


def build_gpt2(
    *,
    n_layer: int,
    n_embd: int,
    n_head: int,
    vocab_size: int = 50257,
    n_positions: int = 1024,
    dropout: float = 0.0,
    seed: int = 0,
    device: str | torch.device | None = None,
    **config_kwargs,
):
    """A ``GPT2LMHeadModel`` with random weights (seeded) and SDPA attention.

    ``dropout`` sets GPT-2's three dropout rates; other ``GPT2Config`` fields (e.g.
    ``activation_function``, ``eos_token_id``) pass through ``config_kwargs``. With ``device``
    the weights are created there directly (``"meta"`` gives shapes only, no memory). An input
    longer than ``n_positions`` is refused with a clear error (:func:`guard_positions`).
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    sizes = dict(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=n_positions)
    dropouts = dict(resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout)
    config = GPT2Config(vocab_size=vocab_size, **sizes, **dropouts, **config_kwargs)
    config._attn_implementation = "sdpa"
    if device is None:
        return guard_positions(GPT2LMHeadModel(config))
    with torch.device(device):
        return guard_positions(GPT2LMHeadModel(config))


def _check_positions(module, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook: refuse more positions than the model has embeddings for (shapes only)."""
    ids = kwargs.get("input_ids", args[0] if args else None)
    embeds = kwargs.get("inputs_embeds")
    if ids is not None:
        n = ids.shape[-1]
    elif embeds is not None:
        n = embeds.shape[-2]
    else:
        return
    if kwargs.get("position_ids") is not None:
        return  # the caller chose the positions
    past = kwargs.get("past_key_values")
    seq_length = getattr(past, "get_seq_length", None)
    done = int(seq_length()) if callable(seq_length) else 0
    limit = module.config.n_positions
    if done + n > limit:
        cached = f" after {done} cached" if done else ""
        raise ValueError(
            f"The input has {done + n} positions ({n} new{cached}), but this GPT-2 has "
            f"n_positions={limit}: positions beyond it have no embedding. Truncate the sequences "
            "(e.g. make_batches(..., max_len=model.config.n_positions)) or generate fewer tokens."
        )


def guard_positions(model):
    """Make ``model`` (a ``GPT2LMHeadModel``) refuse inputs longer than ``n_positions`` clearly.

    Without it such an input fails deep inside the position embedding with ``IndexError: index
    out of range in self`` (on a GPU, a device-side assert). The check looks at shapes only, so it
    costs no synchronisation. Idempotent; returns the model.
    """
    if (
        not getattr(model, "_lorakit_position_guard", False)
        and hasattr(model, "config")
        and hasattr(model.config, "n_positions")
    ):
        model.register_forward_pre_hook(_check_positions, with_kwargs=True)
        model._lorakit_position_guard = True
    return model
