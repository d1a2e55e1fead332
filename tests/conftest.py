"""Shared fixtures: tiny GPT-2 models and a tiny tokenizer, built in-process (no downloads)."""

from __future__ import annotations

import contextlib
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LORAKIT_PRESET", "ci")

_SENTENCES = [
    "The Eagle is a coffee shop near the river that serves Japanese food.",
    "A low rank update changes a weight matrix in only a few directions.",
    "Training the whole model costs memory for gradients and optimizer states.",
    "Near Burger King there is a cheap family friendly pub in the city centre.",
    "We freeze the pretrained weights and learn two small matrices instead.",
    "Unicode text such as café, naïve and 東京 must survive the round trip.",
]


def make_tiny_tokenizer(vocab_size: int = 300):
    """A byte-level BPE tokenizer trained on a few sentences, as a PreTrainedTokenizerFast."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        _SENTENCES * 20,
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    return tok


def make_tiny_gpt2(vocab_size: int = 300, seed: int = 0, **overrides):
    """A GPT-2 with random weights in eval mode: 2 layers, width 32, 2 heads, 128 positions, no
    dropout (:func:`lorakit.models.gpt2.build_gpt2`; ``overrides`` change any of its settings)."""
    from lorakit.models.gpt2 import build_gpt2

    kwargs = dict(n_layer=2, n_embd=32, n_head=2, n_positions=128, vocab_size=vocab_size)
    kwargs.update(overrides)
    return build_gpt2(seed=seed, **kwargs).eval()


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return make_tiny_tokenizer()


@pytest.fixture
def tiny_gpt2():
    return make_tiny_gpt2()


@contextlib.contextmanager
def one_thread():
    """One torch thread inside the block: on a 2-core machine it is much faster for tiny models
    than two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ci_grid(tmp_path_factory, name: str, main, *options: str):
    """Run a grid command's ``main`` in the ``ci`` preset on the CPU with one thread, its records
    in a new folder ``name`` (returned)."""
    out = tmp_path_factory.mktemp(name)
    with one_thread():
        main(["--preset", "ci", "--out", str(out), "--device", "cpu", *options])
    return out


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test (:func:`one_thread`)."""
    with one_thread():
        yield


@pytest.fixture(scope="module")
def fixed_source():
    """One source hash for a whole test module, so that the records it makes stay current while
    others edit lorakit/ during the run."""
    with pytest.MonkeyPatch.context() as mp:
        for where in (
            "lorakit.runs",
            "lorakit.experiments._grid",
            "lorakit.experiments._finetune_grid",
            "lorakit.experiments.finetune_report",
        ):
            mp.setattr(f"{where}.source_sha256", lambda *a: "f" * 64)
        yield
