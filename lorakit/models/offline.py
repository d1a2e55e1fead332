"""Caching the offline base and its corpus (layout and keys; see :mod:`lorakit.models.cache`).

Cache layout under :func:`lorakit.models.cache.cache_root`::

    corpus-<fingerprint>/          corpus.jsonl (one {"source", "heldout", "text"} per document)
    offline-<preset>-<key>/        model/ (save_pretrained), tokenizer/, info.json, history.json

``<fingerprint>`` hashes what the corpus is made from (the installed files' names and sizes,
the size limit, the domain text, the share of generated entity prose), so finding the corpus's
SHA-256 does not mean re-reading it;
``<key>`` hashes the corpus's SHA-256, the preset's sizes and the size rule
(:func:`lorakit.models.specs.size_for_tokens`), so a different corpus, a changed preset or a
changed rule gets a new base.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from lorakit.models.cache import cache_root, read_manifest, verify_entry, write_entry
from lorakit.models.corpus import Corpus, candidate_files, gather_corpus, sources_fingerprint
from lorakit.models.info import BaseInfo, short_path
from lorakit.models.specs import GPT2_LADDER, REPEAT_EPOCHS, TOKENS_PER_PARAM, get_spec


def _domain_tag() -> str:
    try:
        from lorakit.data import domain_text

        texts = domain_text("train")
    except Exception:  # noqa: BLE001 - absent or unfinished: the corpus is made without it
        return "none"
    return hashlib.sha256("\n".join(map(str, texts)).encode()).hexdigest()[:16]


def corpus_entry(max_chars: int | None, cache_dir=None, copy_fraction: float = 0.0) -> Path:
    """The cache directory for the corpus of this size (and share of generated entity prose,
    see :func:`lorakit.models.corpus.gather_corpus`) gathered from this installation."""
    extra = f"{max_chars}|{_domain_tag()}|copy={float(copy_fraction)!r}"
    fp = sources_fingerprint(candidate_files(), extra=extra)
    return cache_root(cache_dir) / f"corpus-{fp[:16]}"


def read_corpus(entry: Path) -> Corpus:
    docs, sources, heldout = [], [], []
    with open(entry / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            docs.append(row["text"])
            sources.append(row["source"])
            heldout.append(bool(row["heldout"]))
    meta = read_manifest(entry)
    corpus = Corpus(docs, sources, heldout, domain_text_used=bool(meta.get("domain_text_used")))
    if corpus.sha256 != meta.get("sha256"):
        raise ValueError(f"The cached corpus at {entry} does not hash to its recorded SHA-256.")
    return corpus


def load_or_gather_corpus(
    max_chars: int | None, cache_dir=None, verbose: bool = True, copy_fraction: float = 0.0
) -> Corpus:
    """The corpus from the cache, or gathered now (and cached); ``copy_fraction`` as in
    :func:`lorakit.models.corpus.gather_corpus`."""
    entry = corpus_entry(max_chars, cache_dir, copy_fraction)
    problem = verify_entry(entry)
    if problem is None:
        try:
            return read_corpus(entry)
        except (OSError, ValueError, KeyError) as err:
            problem = str(err)
    if problem != "absent" and verbose:
        print(
            f"lorakit: the cached corpus at {short_path(entry)} is incomplete or corrupt "
            f"({problem}); gathering it again."
        )
    if verbose:
        limit = "all" if max_chars is None else f"{max_chars / 1e6:.1f} M characters"
        print(f"gathering English prose installed with Python and its packages ({limit}) ...")
    corpus = gather_corpus(max_chars, copy_fraction=copy_fraction)

    def fill(tmp: Path) -> None:
        with open(tmp / "corpus.jsonl", "w", encoding="utf-8") as f:
            for text, src, held in zip(corpus.docs, corpus.sources, corpus.heldout):
                f.write(json.dumps({"source": src, "heldout": held, "text": text}) + "\n")

    write_entry(
        entry,
        fill,
        {
            "sha256": corpus.sha256,
            "chars": corpus.chars,
            "documents": len(corpus.docs),
            "domain_text_used": corpus.domain_text_used,
            "copy_fraction": copy_fraction,
        },
    )
    return corpus


def corpus_sha256(
    max_chars: int | None, cache_dir=None, verbose: bool = True, copy_fraction: float = 0.0
) -> str:
    """The SHA-256 of the corpus for ``max_chars`` (and ``copy_fraction``), from the cache's
    manifest when it is there."""
    entry = corpus_entry(max_chars, cache_dir, copy_fraction)
    if verify_entry(entry) is None:
        sha = read_manifest(entry).get("sha256")
        if sha:
            return sha
    return load_or_gather_corpus(max_chars, cache_dir, verbose, copy_fraction).sha256


def base_entry(preset: str, corpus_sha: str, cache_dir=None) -> Path:
    """The cache directory of the offline base for ``preset`` trained on corpus ``corpus_sha``.

    The spec's ``copy_text_fraction`` is left out of the key: the generated text is part of the
    corpus, so its SHA-256 already tells a base built with it from one built without (and bases
    built before the option existed keep their keys)."""
    fields = asdict(get_spec(preset))
    fields.pop("copy_text_fraction", None)
    spec = json.dumps(fields, sort_keys=True)
    rule = (
        f"{TOKENS_PER_PARAM}|{REPEAT_EPOCHS}|{GPT2_LADDER}"  # how a sized_by_tokens spec is sized
    )
    key = hashlib.sha256(f"{corpus_sha}|{spec}|{rule}".encode()).hexdigest()[:16]
    return cache_root(cache_dir) / f"offline-{preset}-{key}"


@contextlib.contextmanager
def quiet_hf_progress() -> Iterator[None]:
    """Hide transformers' per-file progress bars (tiny files; the bars are only noise here)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def save_base(
    model,
    tokenizer,
    info: BaseInfo,
    history: list[dict],
    preset: str,
    corpus: Corpus,
    cache_dir=None,
) -> Path:
    """Write a trained offline base into the cache (atomically); returns its directory."""
    entry = base_entry(preset, corpus.sha256, cache_dir)
    info.cache_path = str(entry)

    def fill(tmp: Path) -> None:
        with quiet_hf_progress():
            model.save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "tokenizer")
        (tmp / "info.json").write_text(json.dumps(info.as_dict(), indent=1, default=str))
        (tmp / "history.json").write_text(json.dumps(history))

    return write_entry(entry, fill, {"preset": preset, "corpus_sha256": corpus.sha256})


def load_cached_base(entry: Path, device=None):
    """Load ``(model, tokenizer, info, history)`` from a verified cache entry."""
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

    with quiet_hf_progress():
        model = GPT2LMHeadModel.from_pretrained(entry / "model", attn_implementation="sdpa")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(entry / "tokenizer")
    info = BaseInfo.from_dict(json.loads((entry / "info.json").read_text()))
    info.cache_path = str(entry)
    history = json.loads((entry / "history.json").read_text())
    if device is not None:
        model.to(device)
    return model.eval(), tokenizer, info, history
