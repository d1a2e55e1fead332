"""Prefix-embedding tuning (PreEmbed) and prefix-layer tuning (PreLayer), paper §5.1.

Both add ``l_p`` prefix and ``l_i`` infix special tokens to every sequence (how they are inserted:
:mod:`lorakit.baselines.prompt`) and train only what belongs to those tokens.

* **PreEmbed** trains the special tokens' input embeddings: ``d·(l_p + l_i)`` parameters.
* **PreLayer** (``variant="activation"``, the paper's §5.1: "instead of just learning the word
  embeddings (or equivalently, the activations after the embedding layer) for some special
  tokens, we learn the activations after every Transformer layer. The activations computed from
  previous layers are simply replaced by trainable ones", ``|Θ| = L·d·(l_p + l_i)``): at the
  special positions, the hidden state *entering* each of the L blocks is replaced by a trainable
  vector — the activation after the embedding layer for block 0, after block ``i - 1`` for block
  ``i``. That is L vectors per token, the paper's count. (The activation after the *last* block
  feeds only the LM head at a special position, whose prediction no loss reads, so replacing it
  too would add ``d`` parameters per token that never train.) Every block's attention thus sees
  trainable content at the special positions, while the special tokens' own computation inside a
  block is thrown away at the next block. That is why the infix goes *before* the separator by
  default (:mod:`lorakit.baselines.prompt`): the first word of the text is then predicted by the
  separator, a real token, and not by a special token whose state every layer overwrites (which
  drops the restaurant's name).
* **Key/value prefix** (``variant="kv"``, Li & Liang's implementation of prefix tuning): instead of
  a hidden state, each block gets trainable *keys and values* at the special positions (what
  ``past_key_values`` would carry). This skips the frozen ``ln_1`` and ``W_k, W_v`` that the
  activation variant still goes through, so keys and values are free independently:
  ``2·L·d·(l_p + l_i)`` parameters, twice the activation variant's.

Initialisation: the special tokens start as what the base model computes for ``l_p + l_i``
randomly drawn real tokens (their embeddings, their per-layer hidden states, or their per-layer
keys and values). Unlike adapters and LoRA, a prefix method changes the model's output from the
start, because the other tokens attend to the new positions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .common import MethodReport, check_fresh, finish, freeze_all, gpt2_parts
from .prompt import (
    INFIX_PLACES,
    PromptEmbedding,
    PromptState,
    PromptTokens,
    replace_at_special,
    sample_token_ids,
)

VARIANTS = ("activation", "kv")


class PrefixLayerInput(nn.Module):
    """Wraps a GPT-2 block: replaces its input at special positions by trainable ``acts`` (n, d)."""

    def __init__(self, block: nn.Module, acts: torch.Tensor, state: PromptState) -> None:
        super().__init__()
        self.block = block
        self.acts = nn.Parameter(acts.clone())
        self.state = state

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        hidden_states = replace_at_special(hidden_states, self.state.index, self.acts)
        return self.block(hidden_states, *args, **kwargs)


class PrefixKeyValue(nn.Module):
    """Wraps ``attn.c_attn``: its key and value outputs at special positions become ``kv``
    (n, 2d)."""

    def __init__(self, c_attn: nn.Module, kv: torch.Tensor, state: PromptState) -> None:
        super().__init__()
        self.c_attn = c_attn
        self.kv = nn.Parameter(kv.clone())
        self.state = state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.c_attn(x)  # (B, T, 3d) = [q | k | v]
        d = qkv.shape[-1] // 3
        kv = replace_at_special(qkv[..., d:], self.state.index, self.kv)
        return torch.cat([qkv[..., :d], kv], dim=-1)


def _check_counts(
    model: nn.Module, l_p: int, l_i: int, separator_ids: Sequence[int] | None, infix: str = "before"
) -> int:
    if infix not in INFIX_PLACES:
        raise ValueError(
            f"infix must be one of {INFIX_PLACES} (relative to the separator), got {infix!r}."
        )
    for value, name in ((l_p, "l_p"), (l_i, "l_i")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}.")
    if l_p + l_i == 0:
        raise ValueError("l_p + l_i is 0: there are no special tokens to train; use l_p >= 1.")
    n_positions = model.config.n_positions
    if l_p + l_i >= n_positions:
        raise ValueError(
            f"{l_p + l_i} special tokens leave no room in the model's {n_positions} "
            f"positions; use l_p + l_i < {n_positions} (the paper uses up to a few hundred "
            "with 1024 positions)."
        )
    if l_i > 0 and not separator_ids:
        raise ValueError(
            "l_i > 0 needs separator_ids (e.g. tokenizer.encode(' ||')): the infix "
            "goes right after the separator between the MR and the text."
        )
    return n_positions


@torch.no_grad()
def _base_activations(model: nn.Module, ids: torch.Tensor) -> list[torch.Tensor]:
    """The hidden state entering each block for the token sequence ``ids`` (n,): L tensors
    (n, d)."""
    _, blocks = gpt2_parts(model)
    seen: list[torch.Tensor] = []
    hooks = [
        b.register_forward_pre_hook(lambda _m, args: seen.append(args[0][0].detach().clone()))
        for b in blocks
    ]
    transformer = getattr(model, "transformer", model)
    was_training = transformer.training
    try:
        device = next(model.parameters()).device
        transformer.eval()
        transformer(input_ids=ids.unsqueeze(0).to(device), use_cache=False)
    finally:
        transformer.train(was_training)  # restored even if the forward fails
        for h in hooks:
            h.remove()
    return seen


def _install(
    model: nn.Module,
    l_p: int,
    l_i: int,
    separator_ids: Sequence[int] | None,
    seed: int,
    trainable_embedding: bool,
    infix: str,
) -> tuple[PromptTokens, PromptState, torch.Tensor]:
    transformer, _ = gpt2_parts(model)
    wte = transformer.wte
    vocab = wte.num_embeddings
    init_ids = sample_token_ids(vocab, l_p + l_i, seed)
    state = PromptState()
    rows = wte.weight.detach()[init_ids.to(wte.weight.device)]
    if not trainable_embedding:
        rows = torch.zeros_like(rows)
    transformer.wte = PromptEmbedding(wte, rows, trainable_embedding, state)
    tokens = PromptTokens(vocab, l_p, l_i, separator_ids, model.config.n_positions, infix)
    return tokens, state, init_ids


def apply_prefix_embed(
    model: nn.Module,
    l_p: int = 10,
    l_i: int = 0,
    separator_ids: Sequence[int] | None = None,
    seed: int = 0,
    infix: str = "before",
) -> MethodReport:
    """PreEmbed: ``l_p + l_i`` special tokens whose input embeddings are the only trainable weights.

    Parameters
    ----------
    model : HF GPT-2, changed in place (``transformer.wte`` becomes a :class:`PromptEmbedding`).
    l_p, l_i : prefix and infix lengths.
    separator_ids : token ids of the MR/text separator (``" ||"``); required when ``l_i > 0``.
    seed : picks the real tokens whose embeddings initialise the special ones.
    infix : the infix goes ``"before"`` (default) or ``"after"`` the separator.

    Returns
    -------
    MethodReport
        ``formula = d·(l_p + l_i)``; ``prepare_batch`` inserts the special tokens into a batch.

    Raises
    ------
    ValueError
        Negative lengths, no special tokens, more special tokens than positions, an infix without
        a separator, or a method already applied; the model is untouched.
    """
    check_fresh(model, "prefix_embed")
    _check_counts(model, l_p, l_i, separator_ids, infix)
    freeze_all(model)
    tokens, _, _ = _install(
        model, l_p, l_i, separator_ids, seed, trainable_embedding=True, infix=infix
    )
    d = model.config.n_embd
    config = {
        "l_p": l_p,
        "l_i": l_i,
        "separator_ids": tokens.separator_ids,
        "seed": seed,
        "infix": infix,
    }
    return finish(
        model,
        "prefix_embed",
        config,
        ["transformer.wte.prompt"],
        d * (l_p + l_i),
        f"d*(l_p + l_i) with d={d}, l_p={l_p}, l_i={l_i}",
        tokens.insert,
    )


def apply_prefix_layer(
    model: nn.Module,
    l_p: int = 10,
    l_i: int = 0,
    separator_ids: Sequence[int] | None = None,
    variant: str = "activation",
    seed: int = 0,
    infix: str = "before",
) -> MethodReport:
    """PreLayer: trainable activations (or keys/values) of the special tokens at every layer.

    Parameters
    ----------
    model : HF GPT-2, changed in place.
    l_p, l_i : prefix and infix lengths.
    separator_ids : token ids of the MR/text separator (``" ||"``); required when ``l_i > 0``.
    variant : ``"activation"`` (the paper's PreLayer, ``L·d·(l_p+l_i)``) or ``"kv"`` (Li & Liang's
        key/value prefix, ``2·L·d·(l_p+l_i)``); see the module docstring for the difference.
    seed : picks the real tokens whose activations initialise the special ones.
    infix : the infix goes ``"before"`` (default) or ``"after"`` the separator (after it, the
        activation variant must predict the text's first token from a special position).

    Returns
    -------
    MethodReport
        ``formula`` as above; ``prepare_batch`` inserts the special tokens into a batch.

    Raises
    ------
    ValueError
        As :func:`apply_prefix_embed`, or an unknown ``variant``; the model is untouched.
    """
    check_fresh(model, "prefix_layer")
    _check_counts(model, l_p, l_i, separator_ids, infix)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}.")
    transformer, blocks = gpt2_parts(model)
    init_ids = sample_token_ids(transformer.wte.num_embeddings, l_p + l_i, seed)
    acts = _base_activations(model, init_ids)  # L tensors (n, d), computed before any change
    freeze_all(model)
    tokens, state, _ = _install(
        model, l_p, l_i, separator_ids, seed, trainable_embedding=False, infix=infix
    )
    d, L = model.config.n_embd, len(blocks)
    modules = []
    for i, h in enumerate(acts):
        block = blocks[i]
        if variant == "activation":
            blocks[i] = PrefixLayerInput(block, h, state)
            modules.append(f"transformer.h.{i}.acts")
        else:
            with torch.no_grad():
                kv = block.attn.c_attn(block.ln_1(h))[..., d:]
            block.attn.c_attn = PrefixKeyValue(block.attn.c_attn, kv, state)
            modules.append(f"transformer.h.{i}.attn.c_attn.kv")
    factor = 1 if variant == "activation" else 2
    formula = factor * L * d * (l_p + l_i)
    text = f"{'2*' if factor == 2 else ''}L*d*(l_p + l_i) with L={L}, d={d}, l_p={l_p}, l_i={l_i}"
    config = {
        "l_p": l_p,
        "l_i": l_i,
        "separator_ids": tokens.separator_ids,
        "variant": variant,
        "seed": seed,
        "infix": infix,
    }
    return finish(model, "prefix_layer", config, modules, formula, text, tokens.insert)
