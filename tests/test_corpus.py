"""The offline base's corpus, tokenizer, packing and cache
(lorakit.models.corpus/tokenizer/cache).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lorakit.models import cache as kcache
from lorakit.models.corpus import (
    _REPO_ROOT,
    candidate_files,
    gather_corpus,
    is_prose,
    prose_paragraphs,
    source_roots,
    sources_fingerprint,
)
from lorakit.models.tokenizer import PackedBatches, encode_documents, pack_blocks, train_tokenizer

PROSE = (
    "The scheduler keeps a queue of pending tasks and runs each one when its time comes, "
    "so that callers never wait longer than they must."
)


@pytest.fixture(scope="module")
def small_corpus():
    return gather_corpus(200_000)


def test_prose_filter_keeps_sentences_and_drops_code():
    assert is_prose(PROSE)
    assert not is_prose(">>> x = compute(1, 2)\n>>> print(x)")
    assert not is_prose("def f(x):\n    return {k: v for k, v in x.items() if v is not None}")
    assert not is_prose("Parameters\n----------")
    assert not is_prose("+-----+-----+\n| a   | b   |\n+-----+-----+")
    assert not is_prose("short sentence.")
    # a NumPy-style parameter description keeps its prose, drops the "name : type" line
    assert prose_paragraphs("timeout : float\n    " + PROSE) == [PROSE]


def test_gathered_corpus_is_deterministic_prose_and_not_from_the_repo(small_corpus):
    again = gather_corpus(200_000)
    assert again.sha256 == small_corpus.sha256 and again.docs == small_corpus.docs
    assert small_corpus.chars >= 200_000 and len(small_corpus.docs) >= 5
    assert any(small_corpus.heldout) and not all(small_corpus.heldout)
    for doc, src in zip(small_corpus.docs, small_corpus.sources):
        if src.startswith("domain:"):
            continue  # restaurant descriptions from lorakit.data, one per line
        for para in doc.split("\n\n"):
            letters = sum(c.isalpha() or c.isspace() for c in para)
            assert letters >= 0.85 * len(para) and ">>>" not in para, para[:200]
    files = candidate_files()
    repo = [str(_REPO_ROOT / d) for d in ("lorakit", "chapters", "tests", "data")]
    assert not any(str(p).startswith(tuple(repo)) for _, p, _ in files)
    origins = ("stdlib", "site-packages", "man", "info", "doc", "domain")
    assert all(src.split(":")[0] in origins for src in small_corpus.sources)
    assert files == candidate_files()  # fixed order
    assert sources_fingerprint(files) == sources_fingerprint(candidate_files())


def test_gatherer_reads_docstrings_and_docs_from_a_given_root(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(
        f'"""{PROSE}\n\n>>> mod.run()\n"""\n\ndef run():\n    """Run it.\n\n    {PROSE}\n    """\n'
        "    return {'a': 1}\n"
    )
    (tmp_path / "pkg" / "README.md").write_text(f"# Title\n\n{PROSE}\n\n    code = 1\n")
    files = candidate_files([("x", tmp_path)])
    assert sorted(k for k, _, _ in files) == ["x:pkg/README.md", "x:pkg/mod.py"]
    corpus = gather_corpus(10_000, files=files)
    body = [d for d, s in zip(corpus.docs, corpus.sources) if s.startswith("x:")]
    assert body == [PROSE]  # the same paragraph twice is kept once; code is dropped


def test_gather_errors():
    with pytest.raises(ValueError, match="too small"):
        gather_corpus(100)
    with pytest.raises(RuntimeError, match="No English prose"):
        gather_corpus(10_000, files=[])
    assert source_roots()[0][0] == "stdlib"


def test_tokenizer_round_trip_ascii_and_unicode(small_corpus):
    tok = train_tokenizer(small_corpus.train_texts, vocab_size=600)
    assert len(tok) == 600 and tok.eos_token == tok.pad_token == "<|endoftext|>"
    for s in [
        "Hello, world!  Two  spaces\tand a tab.\n",
        PROSE,
        "Unicode: café, naïve, Ελληνικά, 東京, emoji 🙂 and a zero-width\u200bjoiner",
    ]:
        ids = tok(s)["input_ids"]
        assert tok.decode(ids) == s
    assert len(tok(PROSE)["input_ids"]) < len(PROSE.encode())  # merges were learned
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["abc"], vocab_size=100)


def test_packing_and_batches(small_corpus):
    tok = train_tokenizer(small_corpus.train_texts[:20], vocab_size=400)
    ids = encode_documents(tok, ["one document.", "two documents."])
    assert (ids == tok.eos_token_id).sum() == 2 and ids[-1] == tok.eos_token_id
    blocks = pack_blocks(torch.arange(103), 10)
    assert blocks.shape == (10, 10) and blocks[1, 0] == 10
    with pytest.raises(ValueError, match="do not fill one block"):
        pack_blocks(torch.arange(5), 10)
    batches = PackedBatches(blocks, batch_size=4)
    first, second = [b["input_ids"] for b in batches], [b["input_ids"] for b in batches]
    assert len(batches) == len(first) == 2 and first[0].shape == (4, 10)
    assert not torch.equal(torch.cat(first), torch.cat(second))  # a new order every pass
    evals = list(PackedBatches(blocks, batch_size=4, shuffle=False))
    assert len(evals) == 3 and torch.equal(torch.cat([b["labels"] for b in evals]), blocks)
    with pytest.raises(ValueError, match="n_blocks, T"):
        PackedBatches(torch.arange(5), 2)


def test_cache_entry_is_atomic_and_verified(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAKIT_CACHE", str(tmp_path / "c"))
    assert kcache.cache_root() == tmp_path / "c"
    entry = kcache.cache_root() / "thing"

    def broken(d: Path) -> None:
        (d / "a.txt").write_text("half")
        raise KeyboardInterrupt  # an interrupted build

    with pytest.raises(KeyboardInterrupt):
        kcache.write_entry(entry, broken)
    assert kcache.verify_entry(entry) == "absent"
    assert not any(p.name.startswith(".thing") for p in entry.parent.iterdir())
    kcache.write_entry(entry, lambda d: (d / "a.txt").write_text("whole"), {"k": 1})
    assert kcache.verify_entry(entry) is None and kcache.read_manifest(entry) == {"k": 1}
    (entry / "a.txt").write_text("tampered")
    assert "SHA-256" in kcache.verify_entry(entry)
    (entry / "a.txt").unlink()
    assert "missing" in kcache.verify_entry(entry)
    (entry / kcache.MANIFEST).write_text("{not json")
    assert "unreadable" in kcache.verify_entry(entry)
