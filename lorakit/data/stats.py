"""Statistics of an E2E-style data set, and the ``MANIFEST.json`` that records them.

:func:`data_stats` (a few seconds) goes into the MANIFEST whenever the set is written;
:func:`baseline_stats` (test BLEU and slot error rate of the template, retrieval, the references
themselves and an oracle, about half a minute) is added by ``python -m lorakit.data stats``.
Conventions, so that every number can be recomputed from the files:

* word types: references lower-cased and split on every non-letter (``re.findall("[a-z]+")``:
  "£20-25" adds no type, "family-friendly" adds two); "without names" first replaces the venue
  name and the landmark by placeholders;
* sentences: a reference split after ".", "!" or "?" and a space, the venue name replaced by
  ``NAME`` and the landmark by ``NEAR`` (case-insensitive); the overlap is the share of test
  sentences (with repeats) that occur verbatim among the train sentences;
* omission: the share of references that leave at least one slot of their MR unsaid, as the
  slot error rate's lexicon (:func:`lorakit.data.lexicon.slot_errors`) finds it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from lorakit.data.e2e_load import SPLITS, read_jsonl
from lorakit.data.lexicon import literal_spans, slot_error_rate, slot_errors
from lorakit.data.records import E2ERecord

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sha256(path: str | Path) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def word_types(texts: Sequence[str]) -> int:
    """Distinct lower-cased letter-only words in ``texts``."""
    return len({w for t in texts for w in re.findall("[a-z]+", t.lower())})


def delexicalise(text: str, slots: dict[str, str]) -> str:
    """The text with the venue name as ``NAME`` and the landmark as ``NEAR``."""
    for slot, mark in (("name", "NAME"), ("near", "NEAR")):
        if slot in slots:
            for start, end in reversed(literal_spans(text, slots[slot])):
                text = text[:start] + mark + text[end:]
    return text


def sentences(record: E2ERecord) -> list[str]:
    """The delexicalised sentences of all references of a record."""
    slots = record.slots
    return [s for ref in record.refs for s in _SENTENCE_END.split(delexicalise(ref, slots))]


def sentence_overlap(train: Sequence[E2ERecord], test: Sequence[E2ERecord]) -> float:
    """Percent of delexicalised test sentences that occur verbatim among train's."""
    seen = {s for rec in train for s in sentences(rec)}
    test_sentences = [s for rec in test for s in sentences(rec)]
    return 100.0 * sum(s in seen for s in test_sentences) / max(1, len(test_sentences))


def shared_names(train: Sequence[E2ERecord], other: Sequence[E2ERecord]) -> dict[str, int]:
    """How many venue names and landmarks of ``other`` also occur in ``train`` (0 = disjoint).

    A name counts as shared when it equals a train name or landmark or occurs inside one
    (case-insensitive), e.g. a test venue "Fox and Hare" and a train venue "The Fox and Hare".
    """
    train_strings = {v.lower() for r in train for k, v in r.slots.items() if k in ("name", "near")}
    out = {}
    for slot in ("name", "near"):
        values = {r.slots[slot].lower() for r in other if slot in r.slots}
        out[slot] = sum(any(v in t for t in train_strings) for v in values)
    return out


def omission_rate(records: Sequence[E2ERecord]) -> float:
    """Percent of references that leave at least one slot of their MR unsaid (by the lexicon)."""
    refs = [(r.mr, ref) for r in records for ref in r.refs]
    return 100.0 * sum(bool(slot_errors(mr, ref)["missing"]) for mr, ref in refs) / len(refs)


def data_stats(splits: dict[str, Sequence[E2ERecord]]) -> dict:
    """The cheap statistics of a set ``{"train": ..., "dev": ..., "test": ...}``."""
    train = splits["train"]
    delex = [delexicalise(ref, r.slots) for r in train for ref in r.refs]
    held_out = [s for s in SPLITS if s != "train"]
    return {
        "refs_per_mr": {
            k: round(sum(len(r.refs) for r in v) / len(v), 3) for k, v in splits.items()
        },
        "train_word_types": word_types([ref for r in train for ref in r.refs]),
        "train_word_types_without_names": word_types(delex),
        "sentences_in_train_pct": {
            s: round(sentence_overlap(train, splits[s]), 2) for s in held_out
        },
        "names_shared_with_train": {s: shared_names(train, splits[s]) for s in held_out},
        "refs_omitting_a_slot_pct": {s: round(omission_rate(splits[s]), 2) for s in held_out},
    }


def human_texts(records: Sequence[E2ERecord]) -> tuple[list[str], list[list[str]]]:
    """Leave-one-out pairs: each reference as a hypothesis, the other references of its MR."""
    hyps, refs = [], []
    for r in records:
        for i, ref in enumerate(r.refs):
            if len(r.refs) > 1:
                hyps.append(ref)
                refs.append([x for j, x in enumerate(r.refs) if j != i])
    return hyps, refs


def mbr_oracle_texts(
    mrs: Sequence[str], n_samples: int = 100, seed: int = 0, refs_per_mr: float = 8.5
) -> list[str]:
    """For each MR, the most typical of ``n_samples`` texts drawn from the generator itself.

    A minimum-Bayes-risk pick: each sample is scored by the expected share of its 1- to 4-grams
    that at least one of ``refs_per_mr`` references would contain, estimated from the other
    samples (geometric mean over n). A model that learned the generator's distribution
    perfectly could score about this; it is an oracle, not a baseline.
    """
    from lorakit.data.e2e_generate import realise
    from lorakit.data.records import parse_mr

    rng = random.Random(seed)
    out = []
    for mr in mrs:
        slots = parse_mr(mr)
        samples = [realise(slots, rng) for _ in range(n_samples)]
        grams = [
            [set(zip(*(w[i:] for i in range(n)))) for n in (1, 2, 3, 4)]
            for w in (s.split() for s in samples)
        ]
        df = [Counter(g for gs in grams for g in gs[n]) for n in range(4)]
        out.append(
            samples[
                max(
                    range(n_samples), key=lambda i: _mbr_score(grams[i], df, n_samples, refs_per_mr)
                )
            ]
        )
    return out


def _mbr_score(grams: list[set], df: list[Counter], n_samples: int, k: float) -> float:
    """Log of the product over n of the expected share of n-grams found in one of k references."""
    total = 0.0
    for n in range(4):
        hits = [1 - (1 - (df[n][g] - 1) / (n_samples - 1)) ** k for g in grams[n]]
        total += math.log(max(sum(hits) / len(hits), 1e-3) if hits else 1e-3)
    return total


def baseline_stats(
    train: Sequence[E2ERecord], test: Sequence[E2ERecord], oracle_samples: int = 100
) -> dict:
    """Test BLEU and slot error rate (%) of the template, retrieval, the references, the oracle.

    "human" scores each reference against the other references of its MR (leave-one-out: one
    reference fewer than a system gets); its slot error rate is that of all test references.
    """
    from lorakit.data.template import retrieval_texts, template_texts
    from lorakit.evaluate import corpus_bleu

    def bleu(hyps: list[str], refs: list[list[str]]) -> float:
        return round(corpus_bleu(hyps, refs), 2)

    mrs, refs = [r.mr for r in test], [list(r.refs) for r in test]
    out = {}
    for name, hyps in (
        ("template", template_texts(mrs)),
        ("retrieval", retrieval_texts(mrs, train)),
        ("mbr_oracle", mbr_oracle_texts(mrs, oracle_samples)),
    ):
        out[name] = {"bleu": bleu(hyps, refs), "ser": round(slot_error_rate(mrs, hyps), 2)}
    h_hyps, h_refs = human_texts(test)
    h_mrs = [r.mr for r in test for _ in r.refs if len(r.refs) > 1]
    out["human"] = {"bleu": bleu(h_hyps, h_refs), "ser": round(slot_error_rate(h_mrs, h_hyps), 2)}
    out["mbr_oracle"]["samples_per_mr"] = oracle_samples
    return out


def write_manifest(out_dir: str | Path, seed: int, command: str, extra: dict | None = None) -> Path:
    """Write ``MANIFEST.json``: seed, command, generator version, each split file's record and
    reference counts and SHA-256, :func:`data_stats` (when all three splits are there), and
    ``extra`` (e.g. ``{"test_baselines": baseline_stats(...)}``)."""
    from lorakit.data.e2e_generate import GENERATOR_VERSION

    out_dir = Path(out_dir)
    files, splits = {}, {}
    for split in SPLITS:
        path = out_dir / f"{split}.jsonl"
        if path.is_file():
            splits[split] = recs = read_jsonl(path)
            files[path.name] = {
                "records": len(recs),
                "refs": sum(len(r.refs) for r in recs),
                "sha256": sha256(path),
            }
    manifest = {
        "generator": "lorakit.data.e2e_generate",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "command": command,
        "files": files,
    }
    if set(splits) == set(SPLITS):
        manifest["stats"] = data_stats(splits)
    manifest.update(extra or {})
    path = out_dir / "MANIFEST.json"
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def add_baselines(out_dir: str | Path, oracle_samples: int = 100) -> dict:
    """Compute :func:`baseline_stats` for the set in ``out_dir`` and add it to its MANIFEST."""
    out_dir = Path(out_dir)
    path = out_dir / "MANIFEST.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"No MANIFEST.json in {out_dir}; write the set first with "
            f"`python -m lorakit.data generate --out {out_dir}`."
        )
    manifest = json.loads(path.read_text(encoding="utf-8"))
    train, test = (read_jsonl(out_dir / f"{s}.jsonl") for s in ("train", "test"))
    manifest["test_baselines"] = baseline_stats(train, test, oracle_samples)
    manifest["stats_command"] = "python -m lorakit.data stats data/e2e" + (
        f" --oracle-samples {oracle_samples}" if oracle_samples != 100 else ""
    )
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest["test_baselines"]
