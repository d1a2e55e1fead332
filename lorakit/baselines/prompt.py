"""Special prompt tokens for the prefix methods: ids, their embedding, and inserting them into
batches.

How the prefix methods compose with the shared collation
--------------------------------------------------------
The task's sequences are ``<mr> || <text>``. Prefix tuning puts ``l_p`` special tokens in front
of the sequence and ``l_i`` infix tokens between the MR and the text (Li & Liang 2021; the LoRA
paper, §5.1: "infixing ... appends to the prompt"). By default the infix is appended to the MR,
*before* the separator: ``[P_1..P_lp] <mr> [I_1..I_li] || <text>``. Then the token that predicts
the first word of the text (usually the restaurant's name) is the separator's last token, a real
token computed by every layer, which can copy the name from the MR. Placed *after* the separator
(``infix="after"``), that prediction comes from the last infix token; under prefix-layer tuning
its hidden state is replaced at every layer, so only the last block's attention can bring the
name there, and a trained model drops it. The special tokens get ids *past the base vocabulary*,
``V, V+1, ..., V+l_p+l_i-1`` (``V = config.vocab_size``), so they can never be generated (the LM
head still has V outputs) and the model stays an ordinary ``GPT2LMHeadModel``.

1. :class:`PromptEmbedding` wraps ``transformer.wte``: ids below ``V`` go to the frozen base
   embedding, ids ``>= V`` to the method's own rows. It also records, for the forward pass, which
   positions hold which special token (:class:`PromptState`), for the prefix-layer wrappers.
2. :class:`PromptTokens` inserts the ids into a collated batch: ``input_ids`` gets the special ids,
   ``attention_mask`` gets 1 there and ``labels`` gets -100 there, so the unchanged training loop
   and loss apply. The prefix goes before the first attended token of each row (so left padding
   works), the infix right before (default) or right after the first occurrence of
   ``separator_ids`` (the token ids of ``" ||"``). Apply it with ``report.prepare_batch(batch)``
   or ``report.wrap_batches(batches)``, for training and for decoding prompts alike; generated
   continuations never contain special ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .common import Batch

IGNORE_INDEX = -100
INFIX_PLACES = ("before", "after")


class PromptState:
    """Which special token sits where in the current forward pass: ``index`` (B, T), -1
    elsewhere."""

    def __init__(self) -> None:
        self.index: torch.Tensor | None = None


class PromptEmbedding(nn.Module):
    """Token embedding with ``n_special`` extra rows for ids ``V .. V + n_special - 1``.

    Parameters
    ----------
    base : the model's ``nn.Embedding`` (V, d); kept as it is.
    rows : (n_special, d) initial vectors of the special tokens.
    trainable : make ``rows`` a trainable parameter (prefix-embedding); otherwise a fixed buffer
        (prefix-layer replaces these positions' activations anyway).
    state : shared with the prefix-layer wrappers; set on every forward.

    Shapes: ``ids`` (B, T) long -> (B, T, d).
    """

    def __init__(
        self, base: nn.Embedding, rows: torch.Tensor, trainable: bool, state: PromptState
    ) -> None:
        super().__init__()
        self.base = base
        self.vocab_size = base.num_embeddings
        self.n_special = rows.shape[0]
        if trainable:
            self.prompt = nn.Parameter(rows.clone())
        else:
            self.register_buffer("prompt", rows.clone())
        self.state = state

    @property
    def weight(self) -> torch.Tensor:
        """The base vocabulary's embedding matrix (V, d), tied to the LM head."""
        return self.base.weight

    @property
    def embedding_dim(self) -> int:
        return self.base.embedding_dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        special = ids >= self.vocab_size
        index = torch.where(special, ids - self.vocab_size, -1)
        # the check reads a value back from the device, which a CUDA graph cannot record
        capturing = ids.is_cuda and torch.cuda.is_current_stream_capturing()
        if not capturing and bool((index >= self.n_special).any()):
            raise ValueError(
                f"Token id {int(ids.max())} is past the base vocabulary ({self.vocab_size}) "
                f"and its {self.n_special} special tokens; insert special tokens with "
                "PromptTokens.insert (report.prepare_batch) only."
            )
        self.state.index = index
        out = self.base(ids.masked_fill(special, 0))
        rows = self.prompt.to(out.dtype)[index.clamp(min=0)]
        return torch.where(special.unsqueeze(-1), rows, out)


def replace_at_special(
    hidden: torch.Tensor, index: torch.Tensor | None, rows: torch.Tensor
) -> torch.Tensor:
    """``hidden`` (B, T, m) with position (b, t) replaced by ``rows[index[b, t]]`` where
    index >= 0."""
    if index is None or index.shape != hidden.shape[:2]:
        raise RuntimeError(
            "The prefix-layer wrappers need the special-token positions of this "
            "forward pass; call the model with input_ids (not inputs_embeds)."
        )
    special = (index >= 0).unsqueeze(-1)
    return torch.where(special, rows.to(hidden.dtype)[index.clamp(min=0)], hidden)


class PromptTokens:
    """Inserts ``l_p`` prefix and ``l_i`` infix special ids into collated batches.

    Parameters
    ----------
    vocab_size : V, the base vocabulary size; special ids are ``V .. V + l_p + l_i - 1``.
    l_p, l_i : number of prefix and infix tokens.
    separator_ids : token ids whose first occurrence places the infix (needed if ``l_i > 0``).
    max_positions : the model's context length (``config.n_positions``).
    infix : ``"before"`` (default) or ``"after"`` the separator; see the module docstring.
    """

    def __init__(
        self,
        vocab_size: int,
        l_p: int,
        l_i: int,
        separator_ids: Sequence[int] | None,
        max_positions: int,
        infix: str = "before",
    ) -> None:
        if infix not in INFIX_PLACES:
            raise ValueError(f"infix must be one of {INFIX_PLACES} (the separator), got {infix!r}.")
        self.vocab_size, self.l_p, self.l_i = vocab_size, l_p, l_i
        self.separator_ids = list(separator_ids) if separator_ids is not None else None
        self.max_positions, self.infix = max_positions, infix

    @property
    def n_special(self) -> int:
        return self.l_p + self.l_i

    def _infix_start(self, ids: torch.Tensor) -> torch.Tensor:
        """Per row, the index where the infix goes: the separator's start or its end."""
        sep = torch.tensor(self.separator_ids, device=ids.device)
        m = len(sep)
        if ids.shape[1] < m:
            raise ValueError(
                "The sequences are shorter than the separator; cannot place the infix."
            )
        hits = (ids.unfold(1, m, 1) == sep).all(-1)  # (B, T - m + 1)
        found = hits.any(1)
        if not bool(found.all()):
            rows = torch.nonzero(~found).flatten().tolist()
            raise ValueError(
                f"Rows {rows[:5]} of the batch do not contain the separator ids "
                f"{self.separator_ids}; the infix goes right {self.infix} it. "
                "Check the separator (the token ids of ' ||') or use l_i=0."
            )
        return hits.int().argmax(1) + (m if self.infix == "after" else 0)

    def insert(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Return a new batch with the special tokens inserted (the input batch is not changed).

        ``input_ids`` (B, T) -> (B, T + l_p + l_i); ``attention_mask`` and ``labels`` grow the
        same way (1 and -100 at the special positions). Other keys pass through unchanged.
        """
        if not isinstance(batch, Mapping) or "input_ids" not in batch:
            raise TypeError(
                f"Expected a batch dict with 'input_ids' (B, T); got {type(batch).__name__}."
            )
        ids = batch["input_ids"]
        B, T = ids.shape
        n = self.n_special
        if T + n > self.max_positions:
            raise ValueError(
                f"Sequences of {T} tokens plus {n} special tokens exceed the model's "
                f"{self.max_positions} positions; collate with max_length <= "
                f"{self.max_positions - n} or use fewer special tokens."
            )
        dev = ids.device
        mask = batch.get("attention_mask")
        start = (
            (mask != 0).int().argmax(1)
            if mask is not None
            else torch.zeros(B, dtype=torch.long, device=dev)
        )
        infix = self._infix_start(ids) if self.l_i else start
        t = torch.arange(T, device=dev).unsqueeze(0)
        dest = t + self.l_p * (t >= start[:, None]) + self.l_i * (t >= infix[:, None])
        special_pos = torch.cat(
            [
                start[:, None] + torch.arange(self.l_p, device=dev),
                infix[:, None] + self.l_p + torch.arange(self.l_i, device=dev),
            ],
            1,
        )
        special_ids = (self.vocab_size + torch.arange(n, device=dev)).expand(B, n)

        def place(x: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
            out = x.new_zeros(B, T + n)
            out.scatter_(1, dest, x)
            return out.scatter_(1, special_pos, fill.to(x.dtype).expand(B, n))

        out = dict(batch)
        out["input_ids"] = place(ids, special_ids)
        if mask is not None:
            out["attention_mask"] = place(mask, torch.ones(1, 1, device=dev))
        if "labels" in batch:
            out["labels"] = place(batch["labels"], torch.full((1, 1), IGNORE_INDEX, device=dev))
        return out

    __call__ = insert


def sample_token_ids(vocab_size: int, n: int, seed: int) -> torch.Tensor:
    """``n`` distinct-ish real token ids (seeded), used to initialise the special tokens."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (n,), generator=gen)
