"""lorakit.data: records, the synthetic generator, the shipped set, the real-E2E loader,
collation.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch

from lorakit.data import (
    DATA_DIR,
    IGNORE_INDEX,
    SEPARATOR,
    SPLITS,
    DataFileError,
    E2ERecord,
    LengthBucketBatches,
    collate,
    domain_text,
    format_mr,
    generate_splits,
    load_e2e,
    make_batches,
    make_examples,
    parse_mr,
    prompt_batches,
    prompt_text,
    read_e2e_csv,
    read_jsonl,
)
from lorakit.data.__main__ import generate, main
from lorakit.data.e2e_generate import DEFAULT_SIZES, REFS_PER_MR
from lorakit.data.stats import sha256

MR = "name[The Eagle], eatType[coffee shop], food[Japanese], near[Burger King]"


def test_parse_and_format_mr_round_trip():
    slots = parse_mr(MR)
    assert slots == {
        "name": "The Eagle",
        "eatType": "coffee shop",
        "food": "Japanese",
        "near": "Burger King",
    }
    assert format_mr(slots) == MR
    # canonical E2E order whatever the dict order
    assert format_mr({"near": "X", "name": "Y"}) == "name[Y], near[X]"


@pytest.mark.parametrize("bad", ["", "name[The Eagle", "name[A], name[B]", "name[A] food[B]"])
def test_parse_mr_rejects_malformed(bad):
    with pytest.raises(ValueError):
        parse_mr(bad)


def test_generator_is_deterministic_and_disjoint():
    sizes = {"train": 40, "dev": 10, "test": 10}
    a, b = generate_splits(sizes, seed=3), generate_splits(sizes, seed=3)
    assert a == b
    assert generate_splits(sizes, seed=4) != a
    mrs = [r.mr for split in a.values() for r in split]
    assert len(mrs) == len(set(mrs)) == 60  # no MR shared within or across splits
    for rec in a["train"]:
        slots = rec.slots
        assert "name" in slots and len(slots) >= 3
        assert min(REFS_PER_MR) <= len(rec.refs) <= max(REFS_PER_MR)
        assert len(set(rec.refs)) == len(rec.refs)
        for ref in rec.refs:  # every reference names the venue and ends a sentence
            assert slots["name"] in ref and ref.endswith((".", "!", "?"))


def test_generator_verbalises_slots():
    recs = generate_splits({"train": 200, "dev": 0, "test": 0}, seed=0)["train"]
    hits = total = 0
    for rec in recs:
        near = rec.slots.get("near")
        if near:
            total += len(rec.refs)
            hits += sum(near in ref for ref in rec.refs)
    # "near" is said, word for word, in nearly every reference (a few leave one slot out)
    assert total > 0 and 0.9 < hits / total <= 1.0


def test_cli_regenerates_byte_identical(tmp_path):
    main(["generate", "--out", str(tmp_path / "a"), "--sizes", "30", "5", "5", "--seed", "7"])
    generate(tmp_path / "b", seed=7, sizes={"train": 30, "dev": 5, "test": 5})
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl", "MANIFEST.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    manifest = json.loads((tmp_path / "a" / "MANIFEST.json").read_text())
    assert manifest["files"]["dev.jsonl"]["records"] == 5
    assert manifest["files"]["train.jsonl"]["sha256"] == sha256(tmp_path / "a" / "train.jsonl")


def test_shipped_set_matches_manifest_and_sizes():
    manifest = json.loads((DATA_DIR / "MANIFEST.json").read_text())
    for name, facts in manifest["files"].items():
        assert sha256(DATA_DIR / name) == facts["sha256"], f"{name} changed; regenerate it"
    train, dev, test = (load_e2e(s) for s in ("train", "dev", "test"))
    assert (len(train), len(dev), len(test)) == tuple(DEFAULT_SIZES[s] for s in SPLITS)
    assert not ({r.mr for r in train} & {r.mr for r in test})
    assert not ({r.mr for r in train} & {r.mr for r in dev})


def test_shipped_set_regenerates_identically(tmp_path):
    generate(tmp_path, manifest=False)
    for split in ("train", "dev", "test"):
        assert sha256(tmp_path / f"{split}.jsonl") == sha256(DATA_DIR / f"{split}.jsonl")


def test_domain_text_is_train_references_only():
    texts = domain_text("train")
    assert len(texts) == sum(len(r.refs) for r in load_e2e("train"))
    assert all("[" not in t for t in texts[:200])  # descriptions, no MR syntax


def _write_csv(path, rows, header=("mr", "ref")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_real_e2e_csv_groups_rows_by_mr(tmp_path):
    other = "name[Blue Spice], area[riverside], familyFriendly[yes]"
    _write_csv(
        tmp_path / "devset.csv",
        [
            (MR, "The Eagle is a coffee shop."),
            (other, "Blue Spice, by the river, welcomes kids."),
            (MR, "Near Burger King, The Eagle serves sushi, too."),
        ],
    )
    recs = read_e2e_csv(tmp_path / "devset.csv")
    assert [r.mr for r in recs] == [MR, other]
    assert recs[0].refs == (
        "The Eagle is a coffee shop.",
        "Near Burger King, The Eagle serves sushi, too.",
    )
    assert load_e2e("dev", root=tmp_path) == recs  # the CSV name E2E uses is found by split


def test_real_e2e_csv_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="e2e-dataset"):
        read_e2e_csv(tmp_path / "trainset.csv")
    with pytest.raises(FileNotFoundError, match="trainset.csv"):
        load_e2e("train", root=tmp_path)
    _write_csv(tmp_path / "a.csv", [(MR, "ok"), ("name[Broken", "text")])
    with pytest.raises(DataFileError, match=r"a\.csv, line 3"):
        read_e2e_csv(tmp_path / "a.csv")
    _write_csv(tmp_path / "b.csv", [(MR, "ok", "extra")])
    with pytest.raises(DataFileError, match=r"b\.csv, line 2: 3 fields"):
        read_e2e_csv(tmp_path / "b.csv")
    _write_csv(tmp_path / "c.csv", [(MR,)], header=("MR",))
    with pytest.raises(DataFileError, match="lacks the columns"):
        read_e2e_csv(tmp_path / "c.csv")
    with pytest.raises(ValueError, match="Unknown split"):
        load_e2e("validation")


def test_jsonl_malformed_line_is_reported(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"mr": MR, "refs": ["x"]}) + "\n{not json}\n")
    with pytest.raises(DataFileError, match=r"train\.jsonl, line 2"):
        read_jsonl(path)
    path.write_text(json.dumps({"mr": MR, "refs": []}) + "\n")
    with pytest.raises(DataFileError, match="line 1"):
        read_jsonl(path)


def test_examples_mask_the_mr_and_end_with_eos(tiny_tokenizer):
    rec = E2ERecord(MR, ("The Eagle is a coffee shop.", "A Japanese coffee shop."))
    examples = make_examples([rec], tiny_tokenizer)
    assert len(examples) == 2
    ex = examples[0]
    prompt_ids = tiny_tokenizer(prompt_text(MR), add_special_tokens=False)["input_ids"]
    assert list(ex.input_ids[: ex.n_prompt]) == prompt_ids
    assert ex.input_ids[-1] == tiny_tokenizer.eos_token_id
    text = tiny_tokenizer.decode(list(ex.input_ids), skip_special_tokens=True)
    assert text == f"{MR}{SEPARATOR} The Eagle is a coffee shop."
    batch = collate(examples, pad_id=tiny_tokenizer.pad_token_id)
    labels, mask = batch["labels"], batch["attention_mask"]
    assert (labels[0, : ex.n_prompt] == IGNORE_INDEX).all()
    assert (labels[mask == 0] == IGNORE_INDEX).all()
    keep = labels != IGNORE_INDEX
    assert torch.equal(labels[keep], batch["input_ids"][keep])
    answer = tiny_tokenizer.decode(labels[0][keep[0]].tolist(), skip_special_tokens=True)
    assert answer == " The Eagle is a coffee shop."


def test_examples_truncate_text_but_refuse_long_mr(tiny_tokenizer):
    rec = E2ERecord(MR, ("word " * 200,))
    ex = make_examples([rec], tiny_tokenizer, max_len=64)[0]
    assert len(ex.input_ids) == 64
    with pytest.raises(ValueError, match="max_len"):
        make_examples([rec], tiny_tokenizer, max_len=5)


def test_length_bucketing_reduces_padding_and_reshuffles(tiny_tokenizer):
    recs = generate_splits({"train": 60, "dev": 0, "test": 0}, seed=1)["train"]
    examples = make_examples(recs, tiny_tokenizer)
    bucketed = LengthBucketBatches(examples, 8, 0, shuffle=True, seed=0, pool_batches=50)
    random_ = LengthBucketBatches(examples, 8, 0, shuffle=True, seed=0, pool_batches=1)
    assert bucketed.padding_fraction() < random_.padding_fraction()
    first = [b["input_ids"] for b in bucketed]
    second = [b["input_ids"] for b in bucketed]
    assert len(first) == len(bucketed) == -(-len(examples) // 8)
    assert sum(b.shape[0] for b in first) == len(examples)
    assert any(not torch.equal(a, b) for a, b in zip(first, second) if a.shape == b.shape) or [
        a.shape for a in first
    ] != [b.shape for b in second]  # each epoch is shuffled anew
    fixed = make_batches(recs, tiny_tokenizer, 8, shuffle=False)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(fixed, fixed))
    with pytest.raises(ValueError, match="batch_size"):
        LengthBucketBatches(examples, 0, 0)


def test_prompt_batches_pad_on_the_left(tiny_tokenizer):
    mrs = ["name[A]", MR]
    (batch,) = list(prompt_batches(mrs, tiny_tokenizer, batch_size=4))
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert (mask[:, -1] == 1).all() and mask[0, 0] == 0
    short = tiny_tokenizer(prompt_text("name[A]"), add_special_tokens=False)["input_ids"]
    assert ids[0, -len(short) :].tolist() == short
