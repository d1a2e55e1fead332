"""A synthetic E2E-style data set, written from scratch by this project (no E2E text is used).

The real E2E NLG set (Novikova et al. 2017) has about 50k crowd-sourced restaurant descriptions;
it is free to download but not ours to ship. This generator makes a set of the same shape and
size: meaning representations over E2E's eight slots with E2E's values, 8.5 references each on
average (E2E: 7.4 to 8.7 per split), 42k / 4.7k / 4.7k references as in E2E.

The references are meant to be varied enough that one fixed template cannot imitate them, yet
structured enough to be learned:

* five writer styles (:data:`STYLE_NAMES`), drawn by :func:`style_weights` from the venue's
  values (an upmarket restaurant gets guide-book and advertising copy, a cheap pub chatty notes),
  each with its own favourite frames, phrasings, connectives, openers and closing remarks;
* sentence plans (:mod:`lorakit.data.e2e_plans`): slot orders, one to three sentences,
  aggregation into noun phrases and predicate lists, relative clauses, fronting, appositions,
  "but" between good and bad news;
* weighted phrasings of every value in every role (:mod:`lorakit.data.e2e_phrases`,
  :mod:`lorakit.data.e2e_food`, :mod:`lorakit.data.e2e_scales`);
* invented venue names and landmarks (:mod:`lorakit.data.e2e_names`); dev and test use names and
  landmarks that train never shows, so a model has to copy them from the MR.

As in E2E, a few references leave one slot out (:data:`OMIT_P`). The statistics that show all this
are in ``data/e2e/MANIFEST.json`` (:mod:`lorakit.data.stats`).

Everything is driven by one ``random.Random(seed)``, so ``generate_splits(seed=...)`` returns the
same records on every machine (Python's ``random`` is stable across versions for the calls used).
"""

from __future__ import annotations

import random

from lorakit.data.e2e_names import name_pools
from lorakit.data.e2e_plans import PlanWriter
from lorakit.data.e2e_writer import cap
from lorakit.data.lexicon import POLARITY, VALUES
from lorakit.data.records import E2ERecord, format_mr

GENERATOR_VERSION = 2
DEFAULT_SIZES = {"train": 4950, "dev": 550, "test": 552}
"""MRs per split: with 8.5 references each, about E2E's 42,061 / 4,672 / 4,693 references."""
REFS_PER_MR = (7, 8, 8, 9, 9, 10)
"""How many distinct references an MR gets: drawn uniformly from this tuple (mean 8.5)."""
NAMES_PER_SPLIT = {"train": 3500, "dev": 250, "test": 250}
LANDMARKS_PER_SPLIT = {"train": 1800, "dev": 160, "test": 160}
OPTIONAL_P = {
    "eatType": 0.85,
    "food": 0.8,
    "priceRange": 0.7,
    "customer rating": 0.7,
    "area": 0.75,
    "familyFriendly": 0.65,
    "near": 0.55,
}
"""Chance that an MR has each slot (``name`` always; at least two others)."""

OMIT_P = 0.04
"""Chance that a reference of an MR with 3+ slots besides the name leaves one slot out."""
STYLE_NAMES = {
    "p": "plain",
    "g": "guide-book",
    "c": "chatty reviewer",
    "a": "advertising",
    "t": "terse",
}
_ORDER = {
    "p": "eatType food area near priceRange|customer rating|familyFriendly",
    "g": "eatType area near food priceRange|customer rating|familyFriendly",
    "c": "eatType food priceRange|customer rating|area near familyFriendly",
    "a": "eatType food area near customer rating|priceRange|familyFriendly",
    "t": "eatType food priceRange|area near customer rating|familyFriendly",
}
_CLOSERS = {
    "c": "Well worth a visit.|Worth a try.|Give it a go!|Definitely worth a look.|"
    "Worth checking out.|I would go back.|Pop in if you are passing.|"
    "You could do a lot worse.|Check it out.|I would give it a try.|"
    "Recommended.|Not a bad shout at all.|Worth a detour.|"
    "Good for a quick bite.|One to remember.",
    "a": "Book your table today!|Why not pay a visit?|Come and see for yourself!|"
    "Don't miss it!|We look forward to seeing you!|Reserve your table now!|"
    "Your table is waiting!|Drop in soon!|See you there!|Treat yourself today!|"
    "Call in today!|Experience it for yourself!|We can't wait to welcome you!|"
    "Make it your next stop!|Visit us soon!",
}
_OPENERS = {
    "c": "Honestly,|To be honest,|I have to say,|If you ask me,|Frankly,|Take it from me:",
    "g": "Visitors to the area will find that|Those exploring the city will find that|"
    "Travellers may like to know that",
    "a": "Good news for food lovers:|Here is a treat:|Great news:",
}
_CONTRACTIONS = [
    (" is not ", " isn't "),
    ("It is ", "It's "),
    (" it is ", " it's "),
    ("does not ", "doesn't "),
    ("You will ", "You'll "),
    (" you will ", " you'll "),
    ("There is ", "There's "),
    ("you are ", "you're "),
    ("will not ", "won't "),
    ("I would ", "I'd "),
]

__all__ = [
    "DEFAULT_SIZES",
    "GENERATOR_VERSION",
    "VALUES",
    "generate_splits",
    "random_mr",
    "realise",
    "style_weights",
]


def style_weights(slots: dict[str, str]) -> dict[str, float]:
    """How likely each writer style is to describe this venue.

    Writers are not spread evenly: upmarket, well-rated restaurants draw guide-book and
    advertising copy, cheap pubs and fast food draw chatty and terse notes, and nobody
    advertises a poorly rated place. Each feature of the venue multiplies some styles' weights;
    the product is raised to the power 2.5, so that most venues have a clear majority style.
    So the most likely wording of an MR depends on its values, which a model can learn and a
    fixed template cannot follow.
    """
    w = {"p": 15.0, "g": 20.0, "c": 20.0, "a": 20.0, "t": 20.0}
    factors = {
        ("eatType", "restaurant"): "g3 a2 c0.6",
        ("eatType", "pub"): "c3 t1.5 g0.5",
        ("eatType", "coffee shop"): "p2.5 c1.5",
        ("food", "Fast food"): "t3 c2 g0.4",
        ("priceRange", "high"): "g2.5 a2 t0.6",
        ("priceRange", "more than £30"): "g2.5 a2 t0.6",
        ("priceRange", "cheap"): "c2 t2 g0.5",
        ("priceRange", "less than £20"): "c2 t2 g0.5",
        ("customer rating", "high"): "a2.5 g1.5",
        ("customer rating", "5 out of 5"): "a2.5 g1.5",
        ("customer rating", "low"): "a0.2 c2.5",
        ("customer rating", "1 out of 5"): "a0.2 c2.5",
        ("familyFriendly", "yes"): "a1.5 p1.3",
    }
    if "eatType" not in slots:
        w["p"] *= 2
        w["t"] *= 1.5
    for item in slots.items():
        for f in factors.get(item, "").split():
            w[f[0]] *= float(f[1:])
    return {k: v**2.5 for k, v in w.items()}


def _order(slots: dict[str, str], style: str, rng: random.Random) -> list[str]:
    """The slots in the style's usual order, lightly shuffled; bad news tends to come last."""
    order: list[str] = []
    for item in _ORDER[style].replace("customer rating", "customer_rating").split():
        block = [s.replace("_", " ") for s in item.split("|")]
        rng.shuffle(block)
        order += [s for s in block if s in slots]
    for _ in range(rng.choice([0, 0, 1, 2])):
        i = rng.randrange(1, len(order)) if len(order) > 2 else 0
        if i and order[i - 1] != "eatType":
            order[i - 1], order[i] = order[i], order[i - 1]
    if style in "gca" and rng.random() < 0.7:
        order.sort(key=lambda s: POLARITY.get((s, slots[s]), 0) < 0)
    return order


_SENTENCES = {
    "p": (1, 1, 2, 2),
    "g": (1, 1, 1, 2),
    "c": (1, 2, 2, 3),
    "a": (1, 2, 2, 3),
    "t": (1, 1, 2, 3),
}


def _groups(order: list[str], style: str, rng: random.Random) -> list[list[str]]:
    """Cut the slots into sentences: how many depends on the number of slots and the style."""
    n = len(order)
    usual = _SENTENCES[style][(0, 0, 0, 0, 1, 1, 2, 3)[min(n, 7)]]
    k = max(1, min(n, usual + rng.choices((-1, 0, 1), (1, 5, 1))[0]))
    k = min(k, max(1, n // 2))  # every sentence says two slots or more
    sizes = [min(n, 2)] + [2] * (k - 1)
    for _ in range(n - sum(sizes)):
        sizes[rng.choices(range(k), [2] + [1] * (k - 1))[0]] += 1
    out, start = [], 0
    for size in sizes:
        out.append(order[start : start + size])
        start += size
    return out


def realise(
    slots: dict[str, str], rng: random.Random, style: str | None = None, omit_p: float = OMIT_P
) -> str:
    """One reference text for the MR ``{slot: value}``, by a writer of a random (or given) style.

    Parameters
    ----------
    slots : the MR as ``{slot: value}``, with a ``name``.
    rng : the random source (all choices are drawn from it).
    style : one of :data:`STYLE_NAMES`' keys; default: drawn by :func:`style_weights`.
    omit_p : chance of leaving one slot out when the MR has three or more besides the name.
    """
    if style is None:
        w = style_weights(slots)
        style = rng.choices(list(w), list(w.values()))[0]
    content = {s: v for s, v in slots.items() if s != "name"}
    if len(content) >= 3 and rng.random() < omit_p:
        del content[rng.choice(sorted(content))]
    writer = PlanWriter(slots, style, rng)
    groups = _groups(_order(content, style, rng), style, rng)
    first, left = writer.opening(groups[0])
    sentences = [first]
    polarity = writer.sign(groups[0])
    if left:  # slots the opening had no room for go first in the next sentence
        groups[1:2] = [left + (groups[1] if len(groups) > 1 else [])]
    for group in groups[1:]:
        sentences.append(writer.follow(group, polarity))
        polarity += writer.sign(group)
    if style in _OPENERS and rng.random() < 0.15 and not sentences[0].startswith("If "):
        first = sentences[0]
        first = first if first.startswith(slots["name"]) else first[:1].lower() + first[1:]
        sentences[0] = rng.choice(_OPENERS[style].split("|")) + " " + first
    text = " ".join(cap(s) + ("" if s.endswith(("?", "!")) else ".") for s in sentences)
    if style == "a" and rng.random() < 0.3:
        text = text[:-1] + "!"
    if style in _CLOSERS and rng.random() < 0.35 and writer.sign(list(content)) >= 0:
        closer = rng.choice(_CLOSERS[style].split("|"))
        if rng.random() < 0.85:  # "..., so book your table today!", "... - worth a try."
            joint = " - " if style == "c" else ", so "
            closer = closer if closer.startswith("I ") else closer[:1].lower() + closer[1:]
            text = text[:-1] + joint + closer
        else:
            text += " " + closer
    if style == "c" and rng.random() < 0.7 or style == "a" and rng.random() < 0.3:
        for full, short in _CONTRACTIONS:
            text = text.replace(full, short)
    return text


def random_mr(rng: random.Random, names: list[str], landmarks: list[str]) -> dict[str, str]:
    """A random MR: a name from ``names``, at least two other slots, each with E2E's values."""
    while True:
        slots = {"name": rng.choice(names)}
        for slot, p in OPTIONAL_P.items():
            if rng.random() < p:
                slots[slot] = rng.choice(landmarks) if slot == "near" else rng.choice(VALUES[slot])
        if len(slots) >= 3:
            return slots


def _pool_sizes(per_split: dict[str, int], sizes: dict[str, int]) -> dict[str, int]:
    # small test sets get small pools, so names still repeat across MRs as in the real set
    return {
        s: max(2, min(per_split.get(s, per_split["dev"]), n // 3 + 2)) for s, n in sizes.items()
    }


def generate_splits(
    sizes: dict[str, int] | None = None,
    seed: int = 2017,
    refs_per_mr: tuple[int, ...] = REFS_PER_MR,
    omit_p: float = OMIT_P,
) -> dict[str, list[E2ERecord]]:
    """Generate ``{split: records}``; no MR, venue name or landmark is shared across splits.

    Parameters
    ----------
    sizes : MRs per split, in the order to generate; default :data:`DEFAULT_SIZES`.
    seed : the one seed of the whole set.
    refs_per_mr : each MR gets ``rng.choice(refs_per_mr)`` distinct references.
    omit_p : chance that a reference leaves one slot out (see :func:`realise`).

    Returns
    -------
    dict[str, list[E2ERecord]] : the records of each split, in generation order.
    """
    sizes = DEFAULT_SIZES if sizes is None else sizes
    if not refs_per_mr or min(refs_per_mr) < 1:
        raise ValueError(
            f"refs_per_mr must be a non-empty tuple of counts >= 1, got {refs_per_mr!r}."
        )
    rng = random.Random(seed)
    names, landmarks = name_pools(
        _pool_sizes(NAMES_PER_SPLIT, sizes), _pool_sizes(LANDMARKS_PER_SPLIT, sizes), rng
    )
    seen: set[str] = set()
    out: dict[str, list[E2ERecord]] = {}
    for split, n in sizes.items():
        records = []
        while len(records) < n:
            slots = random_mr(rng, names[split], landmarks[split])
            mr = format_mr(slots)
            if mr in seen:
                continue
            seen.add(mr)
            want, refs = rng.choice(refs_per_mr), []
            for _ in range(10 * want):
                ref = realise(slots, rng, omit_p=omit_p)
                if ref not in refs:
                    refs.append(ref)
                if len(refs) == want:
                    break
            records.append(E2ERecord(mr, tuple(refs)))
        out[split] = records
    return out
