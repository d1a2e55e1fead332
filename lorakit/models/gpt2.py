"""Building a GPT-2 with random weights from its shape: the one place that makes a ``GPT2Config``."""

from __future__ import annotations

import torch


def build_gpt2(*, n_layer: int, n_embd: int, n_head: int, vocab_size: int = 50257,
               n_positions: int = 1024, dropout: float = 0.0, seed: int = 0,
               device: str | torch.device | None = None, **config_kwargs):
    """A ``GPT2LMHeadModel`` with random weights (seeded) and SDPA attention.

    ``dropout`` sets GPT-2's three dropout rates; other ``GPT2Config`` fields (e.g.
    ``activation_function``, ``eos_token_id``) pass through ``config_kwargs``. With ``device``
    the weights are created there directly (``"meta"`` gives shapes only, no memory).
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=vocab_size,
                        n_positions=n_positions, resid_pdrop=dropout, embd_pdrop=dropout,
                        attn_pdrop=dropout, **config_kwargs)
    config._attn_implementation = "sdpa"
    if device is None:
        return GPT2LMHeadModel(config)
    with torch.device(device):
        return GPT2LMHeadModel(config)
