"""Shared fixtures: tiny GPT-2 models and a tiny tokenizer, built in-process (no downloads)."""

from __future__ import annotations

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
    bpe.train_from_iterator(_SENTENCES * 20, vocab_size=vocab_size, min_frequency=1,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>",
                                  bos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                  unk_token="<|endoftext|>")
    return tok


def make_tiny_gpt2(vocab_size: int = 300, seed: int = 0, **overrides):
    """A GPT2LMHeadModel with random weights: 2 layers, width 32, 2 heads, 128 positions."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    kwargs = dict(vocab_size=vocab_size, n_positions=128, n_embd=32, n_layer=2, n_head=2,
                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    kwargs.update(overrides)
    config = GPT2Config(**kwargs)
    config._attn_implementation = "sdpa"
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return make_tiny_tokenizer()


@pytest.fixture
def tiny_gpt2():
    return make_tiny_gpt2()


@pytest.fixture
def one_torch_thread():
    """One torch thread: on a 2-core machine it is much faster for tiny models than two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
