"""From records to training batches: one example per (MR, reference) pair.

An example is the text ``"<mr> || <ref><eos>"``: the MR, the separator ``" ||"``, then the
reference preceded by a space and closed by the end-of-text token. The model learns to continue an
MR after ``" ||"`` with a description and to stop; at test time the prompt is ``"<mr> ||"``
(:func:`prompt_text`). The separator is two ASCII characters that never occur in an MR or a
reference, so the model cannot confuse it with content.

The MR part and the padding get label ``-100`` (no loss): fine-tuning learns p(text | MR) only.
Batches are dicts ``{"input_ids", "attention_mask", "labels"}`` of shape (B, T), padded on the
right; :class:`LengthBucketBatches` groups examples of similar length so padding stays small.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from lorakit.data.records import E2ERecord

SEPARATOR = " ||"
IGNORE_INDEX = -100


def prompt_text(mr: str) -> str:
    """The decoding prompt of an MR: ``"<mr> ||"``."""
    return f"{mr}{SEPARATOR}"


@dataclass(frozen=True)
class Example:
    """Token ids of one (MR, reference) pair; the first ``n_prompt`` ids are the MR + separator."""

    input_ids: tuple[int, ...]
    n_prompt: int


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _eos_id(tokenizer) -> int:
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise ValueError(
            "The tokenizer has no eos_token_id; set one (GPT-2: '<|endoftext|>') so "
            "the model can learn where a description ends."
        )
    return int(eos)


def pad_id_of(tokenizer) -> int:
    """The padding id: the tokenizer's pad token, else its eos token (as for GPT-2)."""
    pad = getattr(tokenizer, "pad_token_id", None)
    return int(pad) if pad is not None else _eos_id(tokenizer)


def make_examples(
    records: Sequence[E2ERecord], tokenizer, max_len: int | None = None
) -> list[Example]:
    """Tokenize every (MR, reference) pair of ``records``.

    Parameters
    ----------
    records : the records; each contributes ``len(rec.refs)`` examples.
    tokenizer : an HF tokenizer (``tokenizer(text)["input_ids"]``) with an eos token.
    max_len : truncate longer examples on the right (the model's ``n_positions``); the MR part
        is never cut: an MR that leaves no room for a text is an error.
    """
    eos = _eos_id(tokenizer)
    out = []
    for rec in records:
        prompt = _ids(tokenizer, prompt_text(rec.mr))
        if max_len is not None and len(prompt) >= max_len:
            raise ValueError(
                f"The MR {rec.mr!r} is {len(prompt)} tokens, which leaves no room for "
                f"its text within max_len={max_len}; use a larger max_len (a model "
                "with more positions) or a tokenizer trained on this domain."
            )
        for ref in rec.refs:
            ids = prompt + _ids(tokenizer, " " + ref.strip()) + [eos]
            if max_len is not None:
                ids = ids[:max_len]
            out.append(Example(tuple(ids), len(prompt)))
    return out


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad examples into a batch.

    Returns
    -------
    dict with ``input_ids`` (B, T) long, ``attention_mask`` (B, T) long and ``labels`` (B, T) long,
    where ``labels`` equals ``input_ids`` on the reference and eos, and -100 on MR and padding.
    """
    if not examples:
        raise ValueError("collate got no examples.")
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        row = torch.tensor(e.input_ids, dtype=torch.long)
        ids[i, :n] = row
        mask[i, :n] = 1
        labels[i, e.n_prompt : n] = row[e.n_prompt :]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class LengthBucketBatches:
    """A re-iterable of batches, each of examples of similar length.

    With ``shuffle``, every pass (epoch) shuffles the examples with ``seed + epoch``, cuts them into
    pools of ``batch_size * pool_batches``, sorts each pool by length, cuts it into batches and
    shuffles the batch order: randomness is kept, and padding is small. Without ``shuffle``, batches
    are cut from the examples sorted by length (deterministic; for evaluation).

    Parameters
    ----------
    examples : from :func:`make_examples`.
    batch_size : examples per batch (the last batch may be smaller).
    pad_id : from :func:`pad_id_of`.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        batch_size: int,
        pad_id: int,
        shuffle: bool = True,
        seed: int = 0,
        pool_batches: int = 50,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if not examples:
            raise ValueError("No examples to batch; are the records empty?")
        self.examples = list(examples)
        self.batch_size, self.pad_id = batch_size, pad_id
        self.shuffle, self.seed, self.pool_batches = shuffle, seed, pool_batches
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.examples) // self.batch_size)

    def _order(self) -> list[list[int]]:
        n, bs = len(self.examples), self.batch_size
        length = [len(e.input_ids) for e in self.examples]
        if not self.shuffle:
            order = sorted(range(n), key=lambda i: length[i])
            return [order[i : i + bs] for i in range(0, n, bs)]
        rng = random.Random(self.seed + self.epoch)
        order = list(range(n))
        rng.shuffle(order)
        pool = bs * self.pool_batches
        batches = []
        for start in range(0, n, pool):
            chunk = sorted(order[start : start + pool], key=lambda i: length[i])
            batches += [chunk[i : i + bs] for i in range(0, len(chunk), bs)]
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        batches = self._order()
        self.epoch += 1
        for idx in batches:
            yield collate([self.examples[i] for i in idx], self.pad_id)

    def padding_fraction(self) -> float:
        """Share of padded positions over one pass (a measure of what bucketing saves)."""
        padded = real = 0
        for idx in self._order():
            lens = [len(self.examples[i].input_ids) for i in idx]
            padded += max(lens) * len(lens)
            real += sum(lens)
        return 1.0 - real / padded


def make_batches(
    records: Sequence[E2ERecord],
    tokenizer,
    batch_size: int,
    max_len: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
) -> LengthBucketBatches:
    """Records -> length-bucketed training batches (one example per (MR, reference) pair)."""
    return LengthBucketBatches(
        make_examples(records, tokenizer, max_len),
        batch_size,
        pad_id_of(tokenizer),
        shuffle=shuffle,
        seed=seed,
    )


def prompt_batches(
    mrs: Sequence[str], tokenizer, batch_size: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Left-padded prompt batches ``"<mr> ||"`` for generation, in the order of ``mrs``.

    Yields dicts with ``input_ids`` (B, T) and ``attention_mask`` (B, T); padding on the left so
    that every prompt ends at the last column, where generation continues.
    """
    pad = pad_id_of(tokenizer)
    for start in range(0, len(mrs), batch_size):
        rows = [_ids(tokenizer, prompt_text(mr)) for mr in mrs[start : start + batch_size]]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
        yield {"input_ids": ids, "attention_mask": mask}
