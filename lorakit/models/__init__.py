"""The base model Φ0: real GPT-2, a local directory, or the course's offline base.

>>> model, tokenizer, info = load_base("auto")   # doctest: +SKIP

Modules: :mod:`.loading` (``load_base``), :mod:`.hub` (is the Hugging Face hub reachable),
:mod:`.gpt2` (``build_gpt2``: a GPT-2 of a given shape), :mod:`.corpus` (installed prose;
:mod:`.prose` its paragraph filter, :mod:`.sysdocs` man pages, info manuals, /usr/share/doc),
:mod:`.tokenizer` (byte-level BPE, packing), :mod:`.specs` (sizes per preset, the size rule),
:mod:`.pretrain` (``pretrain_base``), :mod:`.probes` (unigram and restaurant perplexity, the
copy probe), :mod:`.offline` and :mod:`.cache` (the on-disk cache), :mod:`.flops`
(model FLOPs utilisation). Everything here needs the ``[hf]`` extra (transformers, tokenizers).
"""

from lorakit.models.corpus import Corpus, gather_corpus
from lorakit.models.info import BaseInfo, weights_sha256
from lorakit.models.loading import (
    HUB_NAMES,
    BaseCorruptError,
    BaseNotFoundError,
    BaseUnavailableError,
    load_base,
)
from lorakit.models.pretrain import pretrain_base
from lorakit.models.specs import SPECS, BaseSpec
from lorakit.models.tokenizer import train_tokenizer

__all__ = [
    "HUB_NAMES",
    "SPECS",
    "BaseCorruptError",
    "BaseInfo",
    "BaseNotFoundError",
    "BaseSpec",
    "BaseUnavailableError",
    "Corpus",
    "gather_corpus",
    "load_base",
    "pretrain_base",
    "train_tokenizer",
    "weights_sha256",
]
