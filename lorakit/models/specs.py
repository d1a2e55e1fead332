"""The sizes of the offline base and of its pretraining run, one :class:`BaseSpec` per preset.

Both the pretraining (:mod:`lorakit.models.pretrain`) and the cache (:mod:`lorakit.models.offline`,
whose entry keys hash the spec) read them here.

The ``gpu`` preset's model size follows from the tokens available (:func:`size_for_tokens`):

    supported parameters  N* = REPEAT_EPOCHS x (training tokens) / TOKENS_PER_PARAM
    shape = the largest rung of GPT2_LADDER with at most N* parameters, or the first rung
            (GPT-2 small) when none fits.

``TOKENS_PER_PARAM = 20`` is Hoffmann et al. (2022, "Chinchilla"): a compute-optimal run sees
about 20 tokens per parameter (all parameters, embeddings included, as they count them).
``REPEAT_EPOCHS = 4``: Muennighoff et al. (2023, "Scaling Data-Constrained Language Models")
find that up to about 4 passes, repeated tokens are worth nearly as much as new ones. The first
rung is a floor, not a choice of the bound: installed prose is a few million tokens, which by
this rule supports well under a million parameters, far too small to stand in for GPT-2. The
floor is GPT-2 small's shape, the model that ``load_base("auto")`` gives a learner online, so
both paths adapt the same architecture; the pretraining record states how far below 20 tokens
per parameter the base stays.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

from lorakit.presets import get_preset

TOKENS_PER_PARAM = 20
REPEAT_EPOCHS = 4


class Shape(NamedTuple):
    """A GPT-2 shape: depth, width, attention heads."""

    n_layer: int
    n_embd: int
    n_head: int


# GPT-2's family (Radford et al. 2019): small, medium, large, XL.
GPT2_LADDER = (Shape(12, 768, 12), Shape(24, 1024, 16), Shape(36, 1280, 20), Shape(48, 1600, 25))


@dataclass(frozen=True)
class BaseSpec:
    """Size of an offline base and of its pretraining run.

    ``sized_by_tokens``: the shape (``n_layer``, ``n_embd``, ``n_head``) is picked by
    :func:`size_for_tokens` once the corpus is tokenized; the values given here are the floor.
    ``probe_prompts`` and ``restaurant_texts`` size the evaluation (the in-context copy probe and
    the perplexity on restaurant descriptions, :mod:`lorakit.models.probes`).
    ``copy_text_fraction``: generated prose about invented entities, each named two or more
    times, added to the corpus as about this fraction of its characters (0: none); it teaches
    in-context copying of names (:mod:`lorakit.models.entities`).
    """

    corpus_chars: int | None  # None: all installed prose
    vocab_size: int
    n_layer: int
    n_embd: int
    n_head: int
    n_positions: int
    block_size: int
    batch_size: int
    max_steps: int
    max_epochs: int
    lr: float
    warmup_steps: int
    compile: bool = False
    dropout: float = 0.0
    eval_blocks: int = 256
    sample_tokens: int = 40
    sized_by_tokens: bool = False
    probe_prompts: int = 48
    restaurant_texts: int = 256
    copy_text_fraction: float = 0.0


# A table, one preset a row, kept in this layout by hand (fmt: off).
# fmt: off
SPECS = {
    "ci": BaseSpec(corpus_chars=1_200_000, vocab_size=2048, n_layer=2, n_embd=64, n_head=2,
                   n_positions=128, block_size=128, batch_size=16, max_steps=80, max_epochs=2,
                   lr=3e-3, warmup_steps=8, eval_blocks=64, sample_tokens=24, probe_prompts=24,
                   restaurant_texts=128),
    "cpu": BaseSpec(corpus_chars=4_000_000, vocab_size=8192, n_layer=4, n_embd=256, n_head=4,
                    n_positions=256, block_size=128, batch_size=16, max_steps=400, max_epochs=2,
                    lr=1e-3, warmup_steps=50, eval_blocks=256, probe_prompts=60,
                    restaurant_texts=500),
    # All installed prose; the shape by the tokens-per-parameter rule above (floor: GPT-2 small).
    # Dropout against memorising a corpus seen several times. max_steps bounds the build (about
    # 36M tokens) when a machine has much more text. Generated entity prose adds half as many
    # characters again, to teach copying a name from the prompt (chapter 5's copy probe).
    "gpu": BaseSpec(corpus_chars=None, vocab_size=16384, n_layer=12, n_embd=768, n_head=12,
                    n_positions=1024, block_size=1024, batch_size=32, max_steps=1100,
                    max_epochs=8, lr=6e-4, warmup_steps=100, dropout=0.1, compile=True,
                    eval_blocks=512, sample_tokens=60, sized_by_tokens=True, probe_prompts=300,
                    restaurant_texts=2000, copy_text_fraction=0.5),
}
# fmt: on


def get_spec(preset: str | None = None) -> BaseSpec:
    """The :class:`BaseSpec` of ``preset`` (default: the active preset)."""
    preset = preset or get_preset()
    if preset not in SPECS:
        raise ValueError(f"preset {preset!r} has no offline base; use one of {sorted(SPECS)}.")
    return SPECS[preset]


def gpt2_param_count(n_layer: int, n_embd: int, vocab_size: int, n_positions: int) -> int:
    """Parameters of a GPT-2 whose LM head is tied to the token embedding (counted once).

    Per block: attention ``c_attn`` (d, 3d) + 3d and ``c_proj`` (d, d) + d, the MLP (d, 4d) + 4d
    and (4d, d) + d, two LayerNorms 2 x 2d: ``12 d^2 + 13 d``. Plus the token embedding
    (V, d), the position embedding (P, d) and the final LayerNorm 2d.
    """
    d = n_embd
    return n_layer * (12 * d * d + 13 * d) + vocab_size * d + n_positions * d + 2 * d


def supported_params(
    train_tokens: int, tokens_per_param: float = TOKENS_PER_PARAM, epochs: float = REPEAT_EPOCHS
) -> float:
    """N* = ``epochs * train_tokens / tokens_per_param``: the size the tokens can train well."""
    if train_tokens < 0 or tokens_per_param <= 0 or epochs <= 0:
        raise ValueError(
            f"supported_params needs train_tokens >= 0 and positive tokens_per_param and epochs; "
            f"got {train_tokens}, {tokens_per_param}, {epochs}."
        )
    return epochs * train_tokens / tokens_per_param


def size_for_tokens(spec: BaseSpec, train_tokens: int, vocab_size: int | None = None):
    """The spec with its shape picked from the training tokens (when ``spec.sized_by_tokens``).

    Parameters
    ----------
    spec : the preset's spec; unchanged when ``sized_by_tokens`` is false.
    train_tokens : tokens in the training documents (each counted once).
    vocab_size : the tokenizer's vocabulary (default ``spec.vocab_size``).

    Returns
    -------
    (spec, facts)
        The spec to train, and a dict for the record: the rule, N*, the parameters of the
        chosen shape, whether the floor decided, and the ladder with each rung's size.
    """
    vocab = vocab_size or spec.vocab_size
    n_star = supported_params(train_tokens)
    ladder = (
        GPT2_LADDER if spec.sized_by_tokens else (Shape(spec.n_layer, spec.n_embd, spec.n_head),)
    )
    sizes = [gpt2_param_count(s.n_layer, s.n_embd, vocab, spec.n_positions) for s in ladder]
    fitting = [i for i, n in enumerate(sizes) if n <= n_star]
    pick = fitting[-1] if fitting else 0
    shape = ladder[pick]
    facts = {
        "rule": (
            f"largest GPT-2 shape with at most N* = {REPEAT_EPOCHS} x tokens / {TOKENS_PER_PARAM} "
            "parameters, at least GPT-2 small"
            if spec.sized_by_tokens
            else "fixed by the preset"
        ),
        "tokens_per_param_target": TOKENS_PER_PARAM,
        "repeat_epochs": REPEAT_EPOCHS,
        "train_tokens": int(train_tokens),
        "supported_params": n_star,
        "params": sizes[pick],
        "shape": shape._asdict(),
        "floor_decided": spec.sized_by_tokens and not fitting,
        "ladder": [{**s._asdict(), "params": n} for s, n in zip(ladder, sizes)],
    }
    return replace(spec, n_layer=shape.n_layer, n_embd=shape.n_embd, n_head=shape.n_head), facts
