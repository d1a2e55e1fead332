"""Generated prose about invented entities, each named two or more times: a copying curriculum.

Installed documentation seldom names the same unfamiliar thing twice in a few sentences, so a
base pretrained on it learns little *in-context copying*: reproducing a name it has never seen,
because the text before it said that name. Data-to-text fine-tuning needs exactly that skill (the
venue name in the meaning representation must reappear in the description). This module writes
short documents in which made-up towns, rivers, ships, people, societies, books and programs
are introduced and then named again in varied sentences, with other entities in between; half
of the paragraphs end in a recap that repeats a few of their sentences word for word.

* Every name is used in one document only, so a model cannot memorise names: the only way to
  predict a repeated name is to copy it from earlier in the block.
* Names are invented syllable words, alone or with ordinary English words; no word of a name is
  in the task's venue-name and landmark lists (:mod:`lorakit.data.e2e_names`), so no venue or
  landmark of any split can be produced, and none of the copy probe's sentence frames is used.
* Deterministic: the same ``max_chars`` and ``seed`` always give the same documents.
"""

from __future__ import annotations

import functools
import random

ENTITIES_VERSION = 2  # 2: recap paragraphs

_ONSETS = "b br c d dr f g gr h k l m n p pr r s sk st t tr v z sh th".split() + [""]
_VOWELS = "a e i o u a e o ae ia ei ou y".split()
_CODAS = "n r l s th nd rn m x sk v rk lt".split() + ["", "", ""]
# Ordinary words that may join an invented one ("Port ...", "The Upper ..."); filtered below.
_PLACE_WORDS = "Port Lake Mount Cape Fort Upper Lower North South East West New Old".split()
_THING_WORDS = """Second Last Distant Broken Open Narrow Early Final Inner Outer Middle Steady
Patient Careful Certain Plain Simple Common Morning Evening Signal Ledger Archive Engine Harvest
Current Frontier Margin Summit Canyon Quarry Forge Workshop Studio Press Foundry Assembly
Council Review Journal Circle Project Venture Method Measure Theory Record Voyage Passage""".split()


@functools.cache
def _e2e_words() -> frozenset[str]:
    """Every word (lower-case) of the task's venue-name and landmark lists."""
    from lorakit.data import e2e_names as names

    lists = ("ADJECTIVES", "NOUNS", "SURNAMES", "VENUE_WORDS", "GIVEN", "SAINTS", "BUILDINGS")
    lists += ("BUILDING_OWNERS", "PLACES", "PLACE_KINDS")
    words = {w.lower() for attr in lists for w in getattr(names, attr)}
    return frozenset(words | {w.removesuffix("'s") for w in words})


@functools.cache
def name_words() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The ordinary words names may use, (place words, thing words), less the task's words."""
    forbidden = _e2e_words()
    return tuple(w for w in _PLACE_WORDS if w.lower() not in forbidden), tuple(
        w for w in _THING_WORDS if w.lower() not in forbidden
    )


# kind: (noun, name shapes, facts). Shapes: "X" an invented word, "P" a place word, "T" a
# thing word, "G" an invented given name.
KINDS = {
    "town": (
        "town",
        ("X", "P X", "X"),
        (
            "lies on the {dir} bank of a wide river",
            "grew up around a market in the {century} century",
            "sits in the hills above the plain",
            "was rebuilt after a fire in {year}",
        ),
    ),
    "river": (
        "river",
        ("X", "the X"),
        (
            "rises in the {dir}ern hills",
            "floods almost every spring",
            "was once used to carry timber to the coast",
            "runs for {num} miles to the sea",
        ),
    ),
    "ship": (
        "ship",
        ("the X", "the T X"),
        (
            "was launched in {year}",
            "carried grain and wool",
            "was lost in a storm off the {dir}ern coast",
            "made {num} voyages",
        ),
    ),
    "person": (
        "surveyor",
        ("G X", "G X", "X"),
        (
            "was born in {year}",
            "designed bridges and canals",
            "kept careful notebooks for {num} years",
            "trained as a clockmaker before turning to machines",
        ),
    ),
    "society": (
        "society",
        ("the X Society", "the T Society of X"),
        (
            "was founded in {year}",
            "meets every month to read papers",
            "has about {num} members",
            "publishes a small journal",
        ),
    ),
    "book": (
        "book",
        ("X", "The T of X", "X and the T"),
        (
            "was first printed in {year}",
            "tells the story of a long journey",
            "runs to {num} pages",
            "was translated into several languages",
        ),
    ),
    "program": (
        "program",
        ("X", "X", "T X"),
        (
            "was first released in {year}",
            "parses configuration files",
            "keeps a log of every request",
            "runs on about {num} machines",
        ),
    ),
    "mountain": (
        "mountain",
        ("Mount X", "X", "the X Peak"),
        (
            "rises above the {dir}ern valley",
            "was first climbed in {year}",
            "is covered in snow for {num} days a year",
            "can be seen from the coast",
        ),
    ),
}
INTRO = (
    "{N} is a {kind} that {fact}.",
    "There is a {kind} called {N}, which {fact}.",
    "Few people have heard of {N}, a {kind} that {fact}.",
    "The {kind} known as {N} {fact}.",
    "In the old records, a {kind} named {N} {fact}.",
    "{N}, a {kind}, {fact}.",
)
AGAIN = (
    "Most accounts of the period mention {N}.",
    "Records from {year} describe {N} in detail.",
    "It was {N} that {fact}.",
    "People still talk about {N} today.",
    "A later survey confirmed that {N} {fact}.",
    "The first map to show {N} was drawn in {year}.",
    "Letters from that time were addressed simply to {N}.",
    "Nobody expected much of {N}.",
    "Even now, {N} {fact}.",
    "According to the archive, {N} {fact}.",
    "A short history of {N} appeared in {year}.",
    "Later writers compared {O} with {N}.",
    "Of all of them, {N} is the best known.",
    "The {kind} is still called {N}.",
    "Many visitors came to see {N}.",
    "Some of the letters mention {O} as well as {N}.",
    "We return to {N} below.",
    "In the end, {N} {fact}.",
    "This is why {N} matters.",
)
RECAP = ("In short:", "To repeat the main points:", "Summary.", "From the notes:", "Once more:")
RECAP_SHARE = 0.5  # of paragraphs, followed by a recap that repeats some sentences word for word


def _word(rng: random.Random) -> str:
    while True:
        w = "".join(
            rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
            for _ in range(rng.choice((2, 2, 3)))
        )
        if 4 <= len(w) <= 11 and w.lower() not in _e2e_words():
            return w.capitalize()


def invent_name(kind: str, rng: random.Random) -> str:
    """A new name for an entity of ``kind`` (a key of :data:`KINDS`)."""
    shape = rng.choice(KINDS[kind][1])
    parts = {"X": _word, "G": _word}
    place, thing = name_words()
    out = [parts[t](rng) if t in parts else t for t in shape.split()]
    out = [rng.choice(place) if t == "P" else rng.choice(thing) if t == "T" else t for t in out]
    name = " ".join(out)
    return name[0].upper() + name[1:] if shape.startswith("X") else name


def _fill(frame: str, rng: random.Random, **values: str) -> str:
    values.setdefault("year", str(rng.randint(1620, 1990)))
    values.setdefault("num", str(rng.randint(3, 900)))
    values.setdefault("dir", rng.choice(("north", "south", "east", "west")))
    values.setdefault("century", rng.choice(("sixteenth", "seventeenth", "eighteenth")))
    text = frame.format(**values)
    return text[0].upper() + text[1:]


def entity_document(rng: random.Random, used: set[str]) -> tuple[str, list[str]]:
    """One paragraph about 2 to 4 new entities, each named 2 to 4 times; also its names.

    With probability :data:`RECAP_SHARE` a recap paragraph follows that repeats two or three of
    the sentences word for word (in their order): a longer span to copy than a name.
    """
    kinds = rng.sample(sorted(KINDS), rng.randint(2, 4))
    names = []
    for kind in kinds:
        name = invent_name(kind, rng)
        while name in used:
            name = invent_name(kind, rng)
        used.add(name)
        names.append(name)
    # each entity is named 2 to 4 times, in a shuffled order; its first mention introduces it
    order = [i for i in range(len(kinds)) for _ in range(rng.randint(2, 4))]
    rng.shuffle(order)
    known = [[_fill(f, rng) for f in KINDS[k][2]] for k in kinds]  # one set of facts each
    seen: set[int] = set()
    sentences = []
    for i in order:
        frame = rng.choice(AGAIN if i in seen else INTRO)
        seen.add(i)
        noun, fact = KINDS[kinds[i]][0], rng.choice(known[i])
        other = names[(i + 1) % len(names)]
        sentences.append(
            _fill(frame, rng, N=names[i], O=other, kind=noun, fact=fact[0].lower() + fact[1:])
        )
    text = " ".join(sentences)
    if rng.random() < RECAP_SHARE:
        picked = sorted(rng.sample(range(len(sentences)), min(len(sentences), rng.randint(2, 3))))
        text += "\n\n" + " ".join([rng.choice(RECAP)] + [sentences[j] for j in picked])
    return text, names


def entity_documents(max_chars: int, seed: int = 0) -> list[str]:
    """Documents of entity prose, about ``max_chars`` characters in all (at least one).

    Parameters
    ----------
    max_chars : stop once the documents reach this many characters.
    seed : the random source; the same arguments always give the same documents.
    """
    if max_chars < 0:
        raise ValueError(f"max_chars must be >= 0 (got {max_chars}).")
    rng = random.Random(f"lorakit-entities-v{ENTITIES_VERSION}-{seed}")
    used: set[str] = set()
    docs, total = [], 0
    while total < max_chars or not docs:
        paragraphs = [entity_document(rng, used)[0] for _ in range(rng.randint(1, 3))]
        doc = "\n\n".join(paragraphs)
        docs.append(doc)
        total += len(doc)
    return docs
