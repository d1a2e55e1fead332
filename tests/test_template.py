"""The template and retrieval baselines."""

from __future__ import annotations

import itertools
import random

import pytest

from lorakit.data import E2ERecord, format_mr, generate_splits
from lorakit.data.e2e_generate import random_mr
from lorakit.data.lexicon import VALUES
from lorakit.data.template import retrieval_texts, template_text, template_texts
from lorakit.evaluate import slot_error_rate

MR = (
    "name[The Fig], eatType[pub], food[Italian], priceRange[cheap], customer rating[5 out of 5], "
    "area[riverside], familyFriendly[no], near[the Clock Tower]"
)


def test_template_reads_as_one_fixed_plan():
    assert template_text(MR) == (
        "The Fig is a pub serving Italian food in the riverside area near the Clock Tower. "
        "It has low prices and a customer rating of 5 out of 5. It is not family-friendly."
    )
    assert (
        template_text("name[A], area[city centre], food[Fast food]")
        == "A is a place serving fast food in the city centre."
    )
    assert template_text({"name": "A", "eatType": "restaurant"}) == "A is a restaurant."
    assert template_texts([MR, MR]) == [template_text(MR)] * 2


def test_template_says_every_slot_and_nothing_else():
    rng = random.Random(0)
    mrs = [format_mr(random_mr(rng, ["The Gilded Fig"], ["Crown Bridge"])) for _ in range(300)]
    # every value of every slot, each with the others absent or present
    for slot, values in VALUES.items():
        for value, other in itertools.product(values, (None, "restaurant")):
            slots = {"name": "B", slot: value}
            if other and slot != "eatType":
                slots["eatType"] = other
            mrs.append(format_mr(slots))
    assert slot_error_rate(mrs, template_texts(mrs)) == 0.0


def test_retrieval_takes_the_most_similar_training_mr():
    train = [
        E2ERecord(
            "name[Old], eatType[pub], food[Indian], near[the Mill]",
            (
                "Old is a pub near the Mill serving Indian food.",
                "Old, an Indian pub, is close to the Mill.",
                "Old is an Indian pub near the Mill.",
            ),
        ),
        E2ERecord(
            "name[Other], eatType[restaurant], food[French]", ("Other is a French restaurant.",)
        ),
    ]
    out = retrieval_texts(
        [
            "name[New], eatType[pub], food[Indian], near[Crown Bridge]",
            "name[Café], eatType[restaurant], food[French], area[riverside]",
        ],
        train,
    )
    # the reference sharing most bigrams with its siblings, the name and landmark swapped
    assert out == ["New is an Indian pub near Crown Bridge.", "Café is a French restaurant."]
    with pytest.raises(ValueError, match="training records"):
        retrieval_texts(["name[A]"], [])


def test_retrieval_is_fluent_but_not_always_right():
    splits = generate_splits({"train": 300, "dev": 0, "test": 60}, seed=5)
    mrs = [r.mr for r in splits["test"]]
    texts = retrieval_texts(mrs, splits["train"])
    names = [r.slots["name"] for r in splits["test"]]
    assert all(name in text for name, text in zip(names, texts))
    assert slot_error_rate(mrs, texts) > 0  # other values than the MR's are left in
