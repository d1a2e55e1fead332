"""The shipped synthetic set (generator v2): every statistic its MANIFEST records, recomputed.

The paper's E2E split sizes are 42,061 / 4,672 / 4,693 references. The set must be hard for a
fixed template (<= 55 BLEU) yet learnable (the generator's own MBR oracle well above it).
"""

from __future__ import annotations

import json
import re

import pytest

from lorakit.data import DATA_DIR, SPLITS, load_e2e
from lorakit.data.e2e_generate import generate_splits, style_weights
from lorakit.data.lexicon import slot_error_rate
from lorakit.data.stats import data_stats
from lorakit.data.template import retrieval_texts, template_texts
from lorakit.evaluate import corpus_bleu

PAPER_REFS = {"train": 42061, "dev": 4672, "test": 4693}


@pytest.fixture(scope="module")
def shipped():
    return {split: load_e2e(split, root=DATA_DIR) for split in SPLITS}


@pytest.fixture(scope="module")
def manifest():
    return json.loads((DATA_DIR / "MANIFEST.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def stats(shipped, manifest):
    computed = data_stats(shipped)
    assert computed == manifest["stats"], "MANIFEST stats are stale: regenerate the set"
    return computed


def test_manifest_says_how_the_set_was_made(manifest):
    assert manifest["generator_version"] == 2 and manifest["seed"] == 2017
    assert manifest["command"] == "python -m lorakit.data generate --out data/e2e"
    assert manifest["stats_command"].startswith("python -m lorakit.data stats data/e2e")
    assert set(manifest["test_baselines"]) == {"template", "retrieval", "human", "mbr_oracle"}


def test_sizes_are_close_to_the_papers(shipped, stats):
    for split, records in shipped.items():
        refs = sum(len(r.refs) for r in records)
        assert abs(refs - PAPER_REFS[split]) / PAPER_REFS[split] < 0.02, (split, refs)
        assert stats["refs_per_mr"][split] >= 8.0


def test_vocabulary_is_rich(stats):
    assert stats["train_word_types"] >= 1500
    assert stats["train_word_types_without_names"] >= 550  # names and landmarks aside


def test_few_test_sentences_occur_in_train(stats):
    assert stats["sentences_in_train_pct"]["test"] < 20
    assert stats["sentences_in_train_pct"]["dev"] < 20


def test_dev_and_test_names_never_occur_in_train(shipped, stats):
    assert stats["names_shared_with_train"] == {s: {"name": 0, "near": 0} for s in ("dev", "test")}
    train = {r.slots.get(k) for r in shipped["train"] for k in ("name", "near")}
    for split in ("dev", "test"):
        assert not train & {r.slots.get(k) for r in shipped[split] for k in ("name", "near")} - {
            None
        }


def test_references_seldom_leave_a_slot_out(stats):
    for split in ("dev", "test"):
        assert 0 < stats["refs_omitting_a_slot_pct"][split] < 6


def test_baselines_score_as_recorded(shipped, manifest):
    test = shipped["test"]
    mrs, refs = [r.mr for r in test], [list(r.refs) for r in test]
    recorded = manifest["test_baselines"]
    template = template_texts(mrs)
    assert round(corpus_bleu(template, refs), 2) == recorded["template"]["bleu"] <= 55
    assert slot_error_rate(mrs, template) == recorded["template"]["ser"] == 0
    retrieval = retrieval_texts(mrs, shipped["train"])
    assert round(corpus_bleu(retrieval, refs), 2) == recorded["retrieval"]["bleu"]
    # learnable: texts drawn from the generator's own distribution (MBR pick) beat the template
    assert recorded["mbr_oracle"]["bleu"] > recorded["template"]["bleu"] + 10
    assert 0 < recorded["human"]["bleu"] < recorded["mbr_oracle"]["bleu"]
    assert recorded["human"]["ser"] < 2


_BAD = [
    r"\s{2}",
    r"\s[,.!?]",
    r"\{|\}",
    r"\b(\w+) \1\b",
    r"\ban [bcdfgjklmnpqrstvwxyz]",
    r"\ba (?!one)[aeio]",
    r"\.\.",
    r"[,;:]$",
]


def test_references_look_like_english(shipped):
    bad = []
    for rec in shipped["test"]:
        name = rec.slots["name"]
        for ref in rec.refs:
            if not (ref[0].isupper() and ref[-1] in ".!?" and name in ref) or any(
                re.search(p, ref) for p in _BAD
            ):
                bad.append(ref)
    assert not bad, bad[:5]


def test_the_writer_depends_on_the_venue():
    upmarket = style_weights(
        {
            "name": "A",
            "eatType": "restaurant",
            "priceRange": "high",
            "customer rating": "5 out of 5",
        }
    )
    cheap_pub = style_weights({"name": "A", "eatType": "pub", "priceRange": "cheap"})
    assert max(upmarket, key=upmarket.get) in "ga" and max(cheap_pub, key=cheap_pub.get) == "c"
    assert upmarket["c"] < upmarket["g"] / 5


def test_every_generated_sentence_says_its_slots():
    """Without deliberate omissions the lexicon finds every slot in every reference."""
    recs = generate_splits({"train": 250, "dev": 0, "test": 0}, seed=3, omit_p=0.0)["train"]
    pairs = [(r.mr, ref) for r in recs for ref in r.refs]
    assert slot_error_rate(*zip(*pairs)) == 0.0
