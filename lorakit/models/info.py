"""``BaseInfo``: what :func:`lorakit.models.load_base` loaded, in a form a reader can check."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

_REPO = Path(__file__).resolve().parents[2]  # the checkout that holds lorakit/ and data/


def short_path(path: str | Path) -> str:
    """``path`` for printing: relative to the repository when inside it (``data/e2e``), else with
    the home directory written as ``~``."""
    try:
        return str(Path(path).resolve().relative_to(_REPO))
    except ValueError:
        pass
    home, p = str(Path.home()), str(path)
    return "~" + p[len(home) :] if home not in ("", "/") and p.startswith(home) else p


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 over a model's parameters: each one's name, dtype, shape and bytes, by name.

    Two models hash alike exactly when every parameter holds the same bits, wherever they live
    (CPU or GPU) and however they were saved and loaded. Two builds of one offline base from the
    same code and corpus can differ (on another GPU or software, or without deterministic kernels,
    GPU kernels add in another order), and this is what tells them apart. Tied weights (GPT-2's
    LM head and token embedding) count once.
    """
    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda item: item[0]):
            t = p.detach().contiguous().cpu()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class BaseInfo:
    """What base model Φ0 was loaded and where it came from.

    Attributes
    ----------
    source : ``"hub"`` (real GPT-2 via transformers), ``"local"`` (a directory) or ``"offline"``.
    name : the name asked for (``"gpt2"``, a directory, ``"offline"``).
    n_params : number of parameters (the LM head is tied to the token embedding; counted once).
    tokenizer : a one-line description of the tokenizer.
    vocab_size : the tokenizer's vocabulary size.
    corpus_chars, corpus_tokens, corpus_documents, corpus_sha256 : the pretraining corpus of the
        offline base (``None`` for real GPT-2: OpenAI's WebText is not available).
    heldout_perplexity : perplexity on the offline corpus's held-out documents.
    weights_sha256 : :func:`weights_sha256` of the loaded model: which build of a base it is.
    preset : the preset the offline base was sized by.
    train_wall_s : wall time of the offline base's build (corpus, tokenizer, pretraining).
    cache_path : where the offline base is cached.
    domain_text_used : whether unpaired domain text (lorakit.data) was in the corpus.
    notice : why ``"auto"`` fell back to the offline base, if it did.
    config : the model's size (n_layer, n_embd, n_head, n_positions).
    training : facts of the pretraining run (steps, tokens seen, tokens/s, MFU, ...).
    """

    source: str
    name: str
    n_params: int
    tokenizer: str
    vocab_size: int
    corpus_chars: int | None = None
    corpus_tokens: int | None = None
    corpus_documents: int | None = None
    corpus_sha256: str | None = None
    heldout_perplexity: float | None = None
    weights_sha256: str | None = None
    preset: str | None = None
    train_wall_s: float | None = None
    cache_path: str | None = None
    domain_text_used: bool | None = None
    notice: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Every field as a plain, JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BaseInfo:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def __repr__(self) -> str:
        rows = [
            ("source", f"{self.source} ({self.name})"),
            ("parameters", f"{self.n_params:,}"),
            ("size", ", ".join(f"{k}={v}" for k, v in self.config.items())),
            ("tokenizer", self.tokenizer),
        ]
        if self.corpus_chars is not None:
            rows.append(
                (
                    "corpus",
                    f"{self.corpus_documents:,} documents, {self.corpus_chars:,} "
                    f"chars, {self.corpus_tokens:,} tokens",
                )
            )
            rows.append(("corpus sha256", str(self.corpus_sha256)))
            rows.append(("domain text", "yes" if self.domain_text_used else "no"))
        if self.heldout_perplexity is not None:
            rows.append(("held-out ppl", f"{self.heldout_perplexity:.2f}"))
        if self.weights_sha256:
            rows.append(("weights sha256", self.weights_sha256))
        if self.preset is not None:
            rows.append(("preset", self.preset))
        if self.train_wall_s is not None:
            rows.append(("build time", f"{self.train_wall_s:.1f} s"))
        if self.cache_path:
            rows.append(("cache", short_path(self.cache_path)))
        if self.notice:
            rows.append(("notice", self.notice))
        width = max(len(k) for k, _ in rows)
        return "BaseInfo(\n" + "\n".join(f"  {k:<{width}} : {v}" for k, v in rows) + "\n)"
