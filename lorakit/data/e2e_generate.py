"""A synthetic E2E-style data set, written from scratch by this project (no E2E text is used).

The real E2E NLG set (Novikova et al. 2017) has about 50k crowd-sourced restaurant descriptions;
it is free to download but not ours to ship. This generator makes a set with the same shape:
meaning representations over E2E's eight slots, and several references each, which vary in
phrasing, slot order, aggregation (one or two sentences, modifiers folded into a noun phrase,
pronouns) and, as in E2E, sometimes leave one slot out. The names are invented.

Everything is driven by one ``random.Random(seed)``, so ``generate_splits(seed=...)`` returns the
same records on every machine (Python's ``random`` is stable across versions for the calls used).
"""

from __future__ import annotations

import random

from lorakit.data.records import E2ERecord, format_mr

NAMES = (
    "The Copper Kettle", "Blue Heron", "The Old Granary", "Saffron Court", "The Lantern",
    "Greenwood Tavern", "The Silver Spoon", "Marigold", "The Brass Anchor", "Juniper House",
    "The Red Fox", "Olive Grove", "The Wandering Goose", "Cedar Table", "The Night Owl",
    "Little Lotus", "The Stone Bridge Inn", "Harbour Lights", "The Painted Door", "Amber Room",
    "The Golden Pear", "Rosemary & Thyme", "The Tin Cup", "Northgate Diner", "The Velvet Bean",
    "Wildflower", "The Black Swan Inn", "Maple Corner", "The Quiet Otter", "Sunrise Kitchen",
    "The Hollow Oak", "Pepper Mill", "The Clockmaker", "Bluebell Cafe", "The Iron Kettle",
    "Cobblestone", "The Gilded Fig", "Riverbend", "The Hungry Heron", "Thistle & Rose",
)
LANDMARKS = (
    "the Town Hall", "Crown Bridge", "the Museum of Clocks", "Elm Park", "the Old Mill",
    "St. Anne's Church", "the Market Cross", "Kingsway Station", "the Corn Exchange",
    "the Botanical Gardens", "Castle Green", "the Playhouse", "Harbour Quay", "the Library",
)
VALUES: dict[str, tuple[str, ...]] = {
    "eatType": ("restaurant", "coffee shop", "pub"),
    "food": ("English", "French", "Italian", "Chinese", "Indian", "Japanese", "Fast food"),
    "priceRange": ("cheap", "moderate", "high", "less than £20", "£20-25", "more than £30"),
    "customer rating": ("low", "average", "high", "1 out of 5", "3 out of 5", "5 out of 5"),
    "area": ("city centre", "riverside"),
    "familyFriendly": ("yes", "no"),
}
OPTIONAL_P = {"eatType": 0.85, "food": 0.6, "priceRange": 0.55, "customer rating": 0.55,
              "area": 0.6, "familyFriendly": 0.5, "near": 0.45}


def _food(v: str) -> str:
    return "fast food" if v == "Fast food" else v


# For each slot and value: adjective forms (go before the noun: "a cheap Italian pub"),
# prepositional forms (after the noun: "... pub near the Library") and verb phrases
# (third person singular: "... serves Italian food"). Any may be empty.
def _adjectives(slot: str, v: str) -> list[str]:
    if slot == "food":
        return [_food(v)]
    if slot == "priceRange":
        return {"cheap": ["cheap", "low-priced", "inexpensive"],
                "moderate": ["moderately priced", "mid-priced"],
                "high": ["expensive", "high-priced", "pricey"]}.get(v, [])
    if slot == "customer rating":
        return {"low": ["low-rated", "poorly rated"], "average": ["average-rated"],
                "high": ["highly rated", "well-reviewed"], "1 out of 5": ["one-star"],
                "3 out of 5": ["three-star"], "5 out of 5": ["five-star"]}[v]
    if slot == "familyFriendly":
        return ["family-friendly", "kid-friendly", "child-friendly"] if v == "yes" else \
            ["adults-only", "adult-oriented"]
    if slot == "area":
        return ["riverside"] if v == "riverside" else ["city centre", "city-centre"]
    return []


def _prepositional(slot: str, v: str) -> list[str]:
    if slot == "near":
        return [f"near {v}", f"close to {v}", f"not far from {v}", f"by {v}"]
    if slot == "area":
        return ["by the river", "on the riverside", "in the riverside area"] if v == "riverside" \
            else ["in the city centre", "in the centre of town", "in the heart of the city"]
    numeric = any(ch.isdigit() for ch in v)
    if slot == "customer rating":
        return [f"with a customer rating of {v}", f"rated {v} by its customers"] if numeric \
            else [f"with {_article(v)} {v} customer rating", f"with {v} ratings"]
    if slot == "priceRange":
        return [f"with {_price_noun(v)}"] + ([f"with a price range of {v}"] if numeric else [])
    if slot == "food":
        return [f"serving {_food(v)} food", f"offering {_food(v)} dishes"]
    if slot == "familyFriendly":
        return ["that welcomes children", "where children are welcome"] if v == "yes" else \
            ["that does not cater for children"]
    return []


def _price_noun(v: str) -> str:
    return {"cheap": "low prices", "moderate": "moderate prices", "high": "high prices",
            "less than £20": "prices under £20", "£20-25": "prices of £20-25",
            "more than £30": "prices above £30"}[v]


def _verb_phrases(slot: str, v: str) -> list[str]:
    if slot == "food":
        return [f"serves {_food(v)} food", f"offers {_food(v)} cuisine",
                f"specialises in {_food(v)} dishes", f"has {_food(v)} food on the menu"]
    if slot == "priceRange":
        return [f"has {_price_noun(v)}", f"is in the {v} price range"] + \
            ({"cheap": ["is cheap"], "moderate": ["is moderately priced"],
              "high": ["is expensive", "is on the pricey side"]}.get(v, [f"costs {v}"]))
    if slot == "customer rating":
        return ([f"is rated {v} by customers", f"has a customer rating of {v}"]
                if v[:1].isdigit() else [f"has {_article(v)} {v} customer rating"]) + \
            ({"high": ["is highly rated"], "low": ["is poorly rated"],
              "average": ["gets average reviews"]}.get(v, []))
    if slot == "area":
        return ["is located by the river", "is on the riverside", "sits by the river"] \
            if v == "riverside" else ["is in the city centre", "is located in the city centre",
                                      "is in the centre of the city"]
    if slot == "familyFriendly":
        return ["is family friendly", "welcomes families", "is kid friendly",
                "is a good place for children"] if v == "yes" else \
            ["is not family friendly", "is not suitable for children", "is not kid friendly",
             "does not welcome families"]
    if slot == "near":
        return [f"is near {v}", f"is located close to {v}", f"can be found near {v}",
                f"is just by {v}"]
    return []


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" and not word.startswith(("one", "uni")) else "a"


def _join(items: list[str], rng: random.Random) -> str:
    if len(items) <= 1:
        return "".join(items)
    comma = "," if len(items) > 2 and rng.random() < 0.4 else ""
    return ", ".join(items[:-1]) + f"{comma} and {items[-1]}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def realise(slots: dict[str, str], rng: random.Random) -> str:
    """One reference text for an MR ``{slot: value}``, chosen at random among many phrasings."""
    name = slots["name"]
    noun = slots.get("eatType") or rng.choice(["place", "venue", "eatery", "spot"])
    rest = [s for s in slots if s not in ("name", "eatType")]
    if len(rest) >= 3 and rng.random() < 0.2:  # as in E2E, a text may leave one slot out
        rest.pop(rng.randrange(len(rest)))
    rng.shuffle(rest)
    # fold a few slots into the noun phrase ("a cheap Italian pub near the Library")
    adj_slots = [s for s in rest if _adjectives(s, slots[s])][:rng.choice([0, 1, 1, 2])]
    pp_slots = [s for s in rest if s not in adj_slots][:rng.choice([0, 0, 1])]
    verbs = [s for s in rest if s not in adj_slots and s not in pp_slots]
    adj_order = ["priceRange", "customer rating", "familyFriendly", "area", "food"]
    adjs = [rng.choice(_adjectives(s, slots[s])) for s in sorted(adj_slots, key=adj_order.index)]
    core = " ".join(adjs + [noun])
    np_ = f"{_article(core)} {core}"
    if pp_slots:
        np_ += " " + rng.choice(_prepositional(pp_slots[0], slots[pp_slots[0]]))
    vps = [rng.choice(_verb_phrases(s, slots[s])) for s in verbs]

    # split the verb phrases between the first sentence and an optional second one
    n_first = rng.randint(0, len(vps)) if len(vps) <= 2 else rng.randint(0, 2)
    first, second = vps[:n_first], vps[n_first:]
    style = rng.randrange(6)
    if not first and style in (2, 3, 5):
        style = 0
    if style == 0:
        text = f"{name} is {np_}" + (" that " + _join(first, rng) if first else "")
    elif style == 1:
        text = f"There is {np_} called {name}" + (" which " + _join(first, rng) if first else "")
    elif style == 2:
        text = f"{_cap(np_)} named {name} {_join(first, rng)}"
    elif style == 3:
        text = f"{name}, {np_}, {_join(first, rng)}"
    elif style == 4:
        text = f"{name} is {np_}"
        second = first + second
    else:
        text = f"{name} {_join(first, rng)}. It is {np_}"
    sentences = [text]
    if second:
        subject = rng.choice(["It", "It", f"The {noun}", f"This {noun}", name])
        if rng.random() < 0.3 and len(second) >= 3:
            sentences.append(f"{subject} {second[0]}")
            sentences.append(f"{rng.choice(['It', subject])} {_join(second[1:], rng)}")
        else:
            sentences.append(f"{subject} {_join(second, rng)}")
    return " ".join(_cap(s) + "." for s in sentences)


def random_mr(rng: random.Random) -> dict[str, str]:
    """A random MR: always a name, at least two other slots, each with E2E's values."""
    while True:
        slots = {"name": rng.choice(NAMES)}
        for slot in ("eatType", "food", "priceRange", "customer rating", "area",
                     "familyFriendly", "near"):
            if rng.random() < OPTIONAL_P[slot]:
                if slot == "near":
                    slots[slot] = rng.choice(LANDMARKS)
                else:
                    slots[slot] = rng.choice(VALUES[slot])
        if len(slots) >= 3:
            return slots


def generate_splits(sizes: dict[str, int] | None = None, seed: int = 2017,
                    refs_range: tuple[int, int] = (4, 8)) -> dict[str, list[E2ERecord]]:
    """Generate ``{split: records}`` with no MR shared across splits.

    Parameters
    ----------
    sizes : MRs per split; default E2E's sizes ``{"train": 4800, "dev": 500, "test": 600}``.
    seed : the one seed of the whole set.
    refs_range : inclusive range of references per MR (distinct texts).
    """
    sizes = sizes or {"train": 4800, "dev": 500, "test": 600}
    lo, hi = refs_range
    if lo < 1 or hi < lo:
        raise ValueError(f"refs_range must satisfy 1 <= lo <= hi, got {refs_range}.")
    rng = random.Random(seed)
    seen: set[str] = set()
    out: dict[str, list[E2ERecord]] = {}
    for split, n in sizes.items():
        records = []
        while len(records) < n:
            slots = random_mr(rng)
            mr = format_mr(slots)
            if mr in seen:
                continue
            seen.add(mr)
            want, refs = rng.randint(lo, hi), []
            for _ in range(10 * want):
                ref = realise(slots, rng)
                if ref not in refs:
                    refs.append(ref)
                if len(refs) == want:
                    break
            records.append(E2ERecord(mr, tuple(refs)))
        out[split] = records
    return out
