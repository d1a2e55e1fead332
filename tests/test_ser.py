"""Slot error rate: hand-written cases, the lexicon against every phrasing the generator has."""

from __future__ import annotations

import pytest

from lorakit.data.e2e_names import all_landmarks, all_names
from lorakit.data.e2e_phrases import phrasings
from lorakit.data.lexicon import VALUES, expresses, find_values
from lorakit.evaluate import score_all, slot_error_rate, slot_errors

MR = (
    "name[The Eagle], eatType[coffee shop], food[Japanese], priceRange[less than £20], "
    "customer rating[low], area[riverside], familyFriendly[yes], near[Burger King]"
)
GOOD = (
    "The Eagle is a cheap Japanese coffee shop by the river near Burger King. It is "
    "poorly rated but welcomes families."
)
NONE = {"missing": [], "added": [], "wrong": []}


def test_a_correct_paraphrase_has_no_errors():
    assert slot_errors(MR, GOOD) == NONE
    # the figure said as a figure, the rating in other words, the landmark at a sentence start
    other = (
        "Burger King is nearby. The Eagle, a riverside café, serves sushi for under £20 a "
        "head; reviews are poor, and kids are welcome."
    )
    assert slot_errors(MR, other) == NONE
    assert slot_error_rate([MR, MR], [GOOD, other]) == 0.0


def test_a_missing_value():
    text = GOOD.replace(" Japanese", "")
    assert slot_errors(MR, text) == {"missing": ["food"], "added": [], "wrong": []}
    assert slot_error_rate([MR], [text]) == pytest.approx(100 / 8)


def test_a_hallucinated_value():
    mr = "name[The Eagle], eatType[pub], area[city centre]"
    text = "The Eagle is a pub in the city centre that serves Italian food and is family friendly."
    assert slot_errors(mr, text) == {
        "missing": [],
        "added": ["food", "familyFriendly"],
        "wrong": [],
    }
    assert slot_error_rate([mr], [text]) == pytest.approx(100 * 2 / 3)


def test_a_wrong_value():
    text = GOOD.replace("cheap", "expensive").replace("coffee shop", "pub")
    assert slot_errors(MR, text) == {"missing": [], "added": [], "wrong": ["eatType", "priceRange"]}


@pytest.mark.parametrize(
    "text, errors",
    [
        ("The Eagle is a pub. It is not family-friendly.", {"wrong": ["familyFriendly"]}),
        ("The Eagle is a pub that isn't kid friendly.", {"wrong": ["familyFriendly"]}),
        ("The Eagle is a pub. Children are not welcome.", {"wrong": ["familyFriendly"]}),
        ("The Eagle is a pub. It is family friendly.", {}),
        (
            "The Eagle is a pub; it is not too expensive and welcomes children.",
            {"added": ["priceRange"]},
        ),
    ],
)
def test_negated_family_friendly(text, errors):
    mr = "name[The Eagle], eatType[pub], familyFriendly[yes]"
    assert slot_errors(mr, text) == {**NONE, **errors}
    no = "name[The Eagle], eatType[pub], familyFriendly[no]"
    assert ("familyFriendly" in slot_errors(no, text)["wrong"]) != (
        "familyFriendly" in errors.get("wrong", [])
    )


def test_the_name_and_the_landmark():
    assert slot_errors(MR, GOOD.replace("The Eagle", "It"))["missing"] == ["name"]
    assert slot_errors(MR, GOOD.replace("The Eagle", "the eagle")) == NONE  # case-insensitive
    assert slot_errors(MR, GOOD.replace("Burger King", "Café Rouge"))["wrong"] == ["near"]
    assert slot_errors(MR, GOOD.replace(" near Burger King", ""))["missing"] == ["near"]
    mr = "name[The Eagle], eatType[pub]"
    assert slot_errors(mr, "The Eagle is a pub close to Crown Bridge.")["added"] == ["near"]
    # a name that contains slot words does not count as those slots
    mr = "name[The Riverside Inn], food[French]"
    assert slot_errors(mr, "The Riverside Inn serves French food.") == NONE


def test_real_e2e_style_references():
    # phrasings people used in the real E2E references (written here, not copied)
    mr = (
        "name[Blue Spice], eatType[restaurant], priceRange[more than £30], "
        "customer rating[5 out of 5], area[riverside], familyFriendly[no]"
    )
    for text in [
        "Blue Spice is a riverside restaurant with a 5 star rating and a price range "
        "of more than 30 pounds. It is not family friendly.",
        "Blue Spice restaurant, located in the riverside area, has high prices and "
        "a 5 out of 5 customer rating but is not kid friendly.",
    ]:
        assert slot_errors(mr, text) == NONE, text


def test_score_all_adds_ser_when_given_mrs():
    refs = [[GOOD]]
    assert "ser" not in score_all([GOOD], refs)
    scores = score_all([GOOD.replace(" Japanese", "")], refs, mrs=[MR])
    assert scores["ser"] == pytest.approx(12.5) and 0 < scores["bleu"] < 100
    with pytest.raises(ValueError, match="one MR per"):
        score_all([GOOD], refs, mrs=[MR, MR])


def test_slot_error_rate_input_errors():
    with pytest.raises(ValueError, match="one text per MR"):
        slot_error_rate([MR], [GOOD, GOOD])
    with pytest.raises(TypeError, match="list of MRs"):
        slot_error_rate([MR], GOOD)
    with pytest.raises(ValueError, match="No MRs"):
        slot_error_rate([], [])


_FRAMES = {
    "pre": "X is a {} place.",
    "post": "X is a place {}.",
    "adj": "X is {}.",
    "vp": "X {}.",
    "np": "X has {}.",
    "clause": "{}.",
    "front": "{}, X is a place.",
}


def _cases():
    for slot in ("food", "priceRange", "customer rating", "area", "familyFriendly"):
        for value in VALUES[slot]:
            for role, entries in phrasings(slot, value).items():
                for text, _ in entries:
                    yield slot, value, _FRAMES[role].format(text)


def test_the_lexicon_finds_every_phrasing_of_the_generator():
    """Each phrase of every role and style says its value, and no other slot."""
    failures = []
    for slot, value, text in _cases():
        text = text.replace("{dishes}", "dishes")
        found = find_values(text, ["X"])
        if not expresses(found, slot, value) or set(found) - {slot}:
            failures.append((slot, value, text, found))
    assert not failures, failures[:10]
    near = [t for _, entries in phrasings("near", "").items() for t, _ in entries]
    for text in near:
        text = text.replace("{near}", "the Clock Tower")
        assert find_values(text, ["the Clock Tower"]) == {}, text
        assert (
            "near" in find_values(text.replace("the Clock Tower", "Crown Bridge"))
            or text.startswith("the Clock Tower")
            or " is " in text
        ), text


def test_names_and_landmarks_say_no_slot():
    strings = all_names()[::25] + all_landmarks()
    assert not [s for s in strings if find_values(f"{s}.")]
