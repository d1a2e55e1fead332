"""The copying curriculum: generated entity prose in the offline base's corpus
(lorakit.models.entities, gather_corpus(copy_fraction=...), the cache keys, the CLI option).
"""

from __future__ import annotations

import argparse
import random
import re
from dataclasses import replace

import pytest

from lorakit.data.e2e_names import all_landmarks, all_names
from lorakit.models import entities, offline, specs
from lorakit.models.corpus import candidate_files, gather_corpus

PROSE = (
    "The scheduler keeps a queue of pending tasks and runs each one when its time comes, "
    "so that callers never wait longer than they must."
)
GLUE = {"the", "of", "and", "society", "peak"}  # words the name shapes add themselves


def _documents_with_names(n: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    rng, used = random.Random(seed), set()
    return [entities.entity_document(rng, used) for _ in range(n)]


def test_entity_documents_are_deterministic_and_sized():
    docs = entities.entity_documents(20_000)
    assert docs == entities.entity_documents(20_000)
    assert docs != entities.entity_documents(20_000, seed=1)
    assert 20_000 <= sum(map(len, docs)) < 20_000 + max(map(len, docs)) + 1
    assert entities.entity_documents(0)  # at least one document
    with pytest.raises(ValueError, match="max_chars"):
        entities.entity_documents(-1)


def test_every_name_is_said_two_or_more_times_in_one_document_only():
    docs = _documents_with_names(300)
    all_used = [name for _, names in docs for name in names]
    assert len(all_used) == len(set(all_used))  # no name in two documents: nothing to memorise
    for text, names in docs:
        assert 2 <= len(names) <= 4
        for name in names:
            said = len(re.findall(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text, flags=re.I))
            assert said >= 2, (name, text)


def test_recaps_repeat_sentences_of_their_paragraph_word_for_word():
    docs = _documents_with_names(200)
    recaps = [t.split("\n\n") for t, _ in docs if "\n\n" in t]
    assert 60 <= len(recaps) <= 140  # about half of the paragraphs
    for body, recap in recaps:
        lead = next(r for r in entities.RECAP if recap.startswith(r))
        repeated = re.split(r"(?<=\.) ", recap[len(lead) :].strip())
        assert len(repeated) >= 2 and all(s in body for s in repeated), recap


def test_names_share_no_word_with_the_task_names_and_landmarks():
    docs = _documents_with_names(400)
    forbidden = entities._e2e_words()
    assert {"golden", "fox", "hartley", "house"} <= forbidden  # the lists were read
    for _, names in docs:
        for name in names:
            words = {w.lower() for w in name.split()} - GLUE
            assert not words & forbidden, name
    text = " ".join(t for t, _ in docs[:150])
    lowered = text.lower()
    assert not [n for n in all_names() + all_landmarks() if n.lower() in lowered]


def test_copy_probe_frames_are_not_in_the_generated_text():
    text = " ".join(entities.entity_documents(60_000)).lower()
    for frame in ("go to", "go back to", "the name of the", "restaurant", "pub", "food"):
        assert not re.search(rf"\b{frame}\b", text), frame


def _files(tmp_path):
    (tmp_path / "pkg").mkdir()
    for i in range(40):
        (tmp_path / "pkg" / f"doc{i}.md").write_text(f"{PROSE[:-1]}, number {i}.\n")
    return candidate_files([("x", tmp_path)])


def test_gather_corpus_adds_entity_prose_as_training_text(tmp_path):
    files = _files(tmp_path)
    plain = gather_corpus(10_000, files=files)
    mixed = gather_corpus(10_000, files=files, copy_fraction=0.2)
    assert "copy" not in plain.chars_by_origin()
    assert mixed.sha256 != plain.sha256
    copy = [i for i, s in enumerate(mixed.sources) if s.startswith("copy:entities/")]
    assert copy and not any(mixed.heldout[i] for i in copy)
    assert 2_000 <= mixed.chars_by_origin()["copy"] < 3_000
    rest = [(d, s, h) for d, s, h in zip(mixed.docs, mixed.sources, mixed.heldout)]
    assert [r for r in rest if not r[1].startswith("copy:")] == list(
        zip(plain.docs, plain.sources, plain.heldout)
    )
    assert gather_corpus(10_000, files=files, copy_fraction=0.2).sha256 == mixed.sha256
    with pytest.raises(ValueError, match="copy_fraction"):
        gather_corpus(10_000, files=files, copy_fraction=1.0)


def test_cache_keys_tell_corpora_apart_and_base_keys_follow_the_corpus(monkeypatch):
    monkeypatch.setattr(offline, "candidate_files", lambda: [])
    plain = offline.corpus_entry(1_000_000)
    assert offline.corpus_entry(1_000_000, copy_fraction=0.1) != plain
    assert offline.corpus_entry(1_000_000, copy_fraction=0.1) != offline.corpus_entry(
        1_000_000, copy_fraction=0.2
    )
    before = offline.base_entry("ci", "a" * 64)
    monkeypatch.setitem(specs.SPECS, "ci", replace(specs.SPECS["ci"], copy_text_fraction=0.1))
    assert offline.base_entry("ci", "a" * 64) == before  # the option lives in the corpus hash
    assert offline.base_entry("ci", "b" * 64) != before


def test_pretrain_base_asks_for_the_corpus_with_entity_prose(monkeypatch):
    from lorakit.models import pretrain

    asked = {}

    def fake(max_chars, **kw):
        asked.update(kw, max_chars=max_chars)
        raise RuntimeError("stop here")

    monkeypatch.setattr(pretrain.offline, "load_or_gather_corpus", fake)
    with pytest.raises(RuntimeError, match="stop here"):
        pretrain.pretrain_base("ci", copy_text=0.15, device="cpu", verbose=False)
    assert asked["copy_fraction"] == 0.15
    with pytest.raises(RuntimeError, match="stop here"):
        pretrain.pretrain_base("ci", device="cpu", verbose=False)
    assert asked["copy_fraction"] == specs.SPECS["ci"].copy_text_fraction == 0.0


def test_pretrain_cli_reads_the_copy_text_fraction():
    from lorakit.experiments.pretrain import fraction

    assert fraction("0.1") == 0.1 and fraction("0") == 0.0
    for bad in ("1", "-0.1", "ten"):
        with pytest.raises(argparse.ArgumentTypeError):
            fraction(bad)
