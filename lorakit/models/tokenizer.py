"""The offline base's tokenizer: byte-level BPE trained on the corpus, and packing text into blocks.

Byte-level BPE is GPT-2's own scheme (Radford et al. 2019): text is first mapped to its UTF-8
bytes, so every string, any script or emoji included, is encodable and decodes back exactly;
merges learned on the corpus then join frequent byte sequences into tokens. We train it with HF
``tokenizers`` and wrap it in a ``transformers.PreTrainedTokenizerFast`` so that it behaves like
the real GPT-2 tokenizer everywhere else in the course (``<|endoftext|>`` is eos, bos and pad).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

EOS = "<|endoftext|>"


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2, model_max_length: int = 1024
):
    """Train a byte-level BPE tokenizer on ``texts``.

    Parameters
    ----------
    texts : the training text (e.g. ``corpus.train_texts``).
    vocab_size : size of the vocabulary, the 256 byte tokens and ``<|endoftext|>`` included.
    min_frequency : a merge must be seen this often to be learned.
    model_max_length : the longest sequence the model takes (its ``n_positions``).

    Returns
    -------
    transformers.PreTrainedTokenizerFast
        ``decode(encode(s)) == s`` for every string ``s`` (no prefix space, no clean-up).
    """
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 300:
        raise ValueError(
            f"vocab_size={vocab_size} is too small for byte-level BPE "
            "(256 byte tokens come first); use >= 300."
        )
    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(
        texts,
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS],
        show_progress=False,
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        eos_token=EOS,
        bos_token=EOS,
        pad_token=EOS,
        unk_token=EOS,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


def describe_tokenizer(tokenizer) -> str:
    """One line: the tokenizer's kind and vocabulary size."""
    kind = type(tokenizer).__name__
    model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
    algo = type(model).__name__ if model is not None else "?"
    return f"{kind} ({algo}, byte-level), vocab {len(tokenizer):,}, eos {tokenizer.eos_token!r}"


def encode_documents(tokenizer, docs: list[str]) -> torch.Tensor:
    """Token ids of ``docs`` concatenated, each document followed by ``<|endoftext|>``.

    Returns
    -------
    torch.Tensor
        (N,) long, N = total tokens. Uses the Rust tokenizer's parallel batch encoding.
    """
    eos = tokenizer.eos_token_id
    encodings = tokenizer.backend_tokenizer.encode_batch(docs, add_special_tokens=False)
    ids: list[int] = []
    for enc in encodings:
        ids.extend(enc.ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def pack_blocks(ids: torch.Tensor, block_size: int) -> torch.Tensor:
    """Cut a token stream into consecutive blocks of ``block_size`` (the tail is dropped).

    Parameters
    ----------
    ids : (N,) token ids.
    block_size : tokens per block (<= the model's ``n_positions``).

    Returns
    -------
    torch.Tensor
        (N // block_size, block_size).
    """
    n = ids.numel() // block_size
    if n == 0:
        raise ValueError(
            f"{ids.numel()} tokens do not fill one block of {block_size}; "
            "use a larger corpus or a smaller block size."
        )
    return ids[: n * block_size].view(n, block_size)


class PackedBatches:
    """Re-iterable batches of packed blocks for :func:`lorakit.train.train` (labels = input_ids).

    No ``attention_mask`` is given: every position is real text, so attention is plain causal
    (SDPA's fast path). Each pass over the batches shuffles the blocks with its own seeded order.

    Parameters
    ----------
    blocks : (n_blocks, T) token ids (put them on the GPU beforehand to skip host copies).
    batch_size : blocks per batch; the last partial batch is dropped when ``shuffle``.
    shuffle : shuffle the blocks in every pass (train) or keep their order (evaluation).
    seed : seed of the shuffling.
    """

    def __init__(self, blocks: torch.Tensor, batch_size: int, shuffle: bool = True, seed: int = 0):
        if blocks.ndim != 2:
            raise ValueError(f"blocks must be (n_blocks, T), got shape {tuple(blocks.shape)}.")
        self.blocks, self.batch_size, self.shuffle, self.seed = blocks, batch_size, shuffle, seed
        self._passes = 0

    def __len__(self) -> int:
        n = self.blocks.shape[0]
        return n // self.batch_size if self.shuffle else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        n = self.blocks.shape[0]
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self._passes)
            order = torch.randperm(n, generator=gen).to(self.blocks.device)
        else:
            order = torch.arange(n, device=self.blocks.device)
        self._passes += 1
        for i in range(len(self)):
            ids = self.blocks[order[i * self.batch_size : (i + 1) * self.batch_size]]
            yield {"input_ids": ids, "labels": ids}
