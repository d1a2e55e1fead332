"""The sizes of the offline base and of its pretraining run, one :class:`BaseSpec` per preset.

Both the pretraining (:mod:`lorakit.models.pretrain`) and the cache (:mod:`lorakit.models.offline`,
whose entry keys hash the spec) read them here.
"""

from __future__ import annotations

from dataclasses import dataclass

from lorakit.presets import get_preset


@dataclass(frozen=True)
class BaseSpec:
    """Size of an offline base and of its pretraining run."""

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


# A table, one preset a row, kept in this layout by hand (fmt: off).
# fmt: off
SPECS = {
    "ci": BaseSpec(corpus_chars=1_200_000, vocab_size=2048, n_layer=2, n_embd=64, n_head=2,
                   n_positions=128, block_size=128, batch_size=16, max_steps=80, max_epochs=2,
                   lr=3e-3, warmup_steps=8, eval_blocks=64, sample_tokens=24),
    "cpu": BaseSpec(corpus_chars=4_000_000, vocab_size=8192, n_layer=4, n_embd=256, n_head=4,
                    n_positions=256, block_size=128, batch_size=16, max_steps=400, max_epochs=2,
                    lr=1e-3, warmup_steps=50, eval_blocks=256),
    # GPT-2 small. Installed prose is a few MB, so the run is capped by epochs (with dropout
    # against memorising) more often than by steps; a machine with more packages trains longer.
    "gpu": BaseSpec(corpus_chars=None, vocab_size=16384, n_layer=12, n_embd=768, n_head=12,
                    n_positions=1024, block_size=1024, batch_size=32, max_steps=2400,
                    max_epochs=8, lr=6e-4, warmup_steps=100, dropout=0.1, compile=True,
                    eval_blocks=512, sample_tokens=60),
}
# fmt: on


def get_spec(preset: str | None = None) -> BaseSpec:
    """The :class:`BaseSpec` of ``preset`` (default: the active preset)."""
    preset = preset or get_preset()
    if preset not in SPECS:
        raise ValueError(f"preset {preset!r} has no offline base; use one of {sorted(SPECS)}.")
    return SPECS[preset]
