"""Phrase-level writing for the synthetic E2E set: noun phrases, predicate lists, fronted phrases.

A :class:`Writer` holds one MR, one writer style (``p`` plain, ``g`` guide-book, ``c`` chatty
reviewer, ``a`` advertising, ``t`` terse) and the random source, and says slot values in a
given role (:mod:`lorakit.data.e2e_phrases`): inside a noun phrase ("a cheap riverside pub
near X"), as a list of predicates ("is cheap and family-friendly, serves Italian food and has
low prices"), or as a fronted phrase ("Close to X, ..."). Values of opposite polarity are
joined with "but". :mod:`lorakit.data.e2e_plans` builds whole sentences on top of it.
"""

from __future__ import annotations

import random

from lorakit.data.e2e_food import DISHES
from lorakit.data.e2e_phrases import HEADS, phrasings
from lorakit.data.lexicon import POLARITY
from lorakit.data.phrase_table import STYLE_KEYS, Entry

# The tables give each writer's preferences; weights are raised to these powers (< 1 evens them
# out) so that no phrasing takes over. The plain writer's are evened most: its favourites are
# the phrasings any template would use, and a set where one wording dominates is one a template
# can imitate.
_EVEN = {
    STYLE_KEYS.index(k): v for k, v in {"p": 0.4, "g": 0.7, "c": 0.7, "a": 0.7, "t": 0.7}.items()
}
_ADJ_ORDER = ("customer rating", "priceRange", "familyFriendly", "area", "food")
_EVALUATIVE = ("customer rating", "priceRange", "familyFriendly")
# Chance that a value goes before the noun ("an Italian restaurant", "a cheap pub"): it depends on
# the value and, for food, on the noun (restaurants are "Italian restaurants", pubs "serve" food).
_P_PRE = {
    ("food", "restaurant"): 0.8,
    ("food", "pub"): 0.3,
    ("food", "coffee shop"): 0.2,
    ("food", ""): 0.6,
    "cheap": 0.7,
    "moderate": 0.45,
    "high": 0.6,
    "low": 0.55,
    "average": 0.15,
    "1 out of 5": 0.25,
    "3 out of 5": 0.25,
    "5 out of 5": 0.3,
    "yes": 0.45,
    "no": 0.05,
    "riverside": 0.5,
    "city centre": 0.3,
}
_FLUFF = {
    "c": "lovely|nice little|friendly little|cosy|decent|handy little|no-nonsense|"
    "cracking little|laid-back|unpretentious|quirky little|bustling",
    "a": "charming|stylish|welcoming|delightful|vibrant|unique|inviting|elegant|"
    "contemporary|relaxed|characterful|beautifully styled|popular",
}
_PLURAL = {
    "is": "are",
    "has": "have",
    "does": "do",
    "dishes": "dish",
    "focuses": "focus",
    "boasts": "boast",
    "won't": "won't",
    "can": "can",
}
RELATIVE = ("that ", "which ", "where ", "known for ")


def article(phrase: str) -> str:
    """``"a"`` or ``"an"`` for the phrase that follows (by sound: "an hour", "a one-star")."""
    word = phrase.split(" ", 1)[0].lower()
    if word.startswith(("one", "once", "uni", "use", "eu", "£")):
        return "a"
    return "an" if word[:1] in "aeiou8" or word.startswith(("hour", "honest")) else "a"


def cap(text: str) -> str:
    """The text with its first letter upper-case."""
    return text[:1].upper() + text[1:]


def _pluralise(predicate: str) -> str:
    """ "also serves X" -> "also serve X", "is" -> "are", "its" -> "their"."""
    words = predicate.replace(" its ", " their ").split(" ")
    i = 1 if words[0] == "also" else 0
    verb = words[i]
    words[i] = _PLURAL.get(verb, verb[:-1] if verb.endswith("s") else verb)
    return " ".join(words)


def join_list(items: list[str], signs: list[int], rng: random.Random) -> str:
    """``"a, b and c"``, with "but" before the last item when its polarity turns.

    An item that holds "and" itself gets a comma after it ("is cheap and central, and serves").
    """
    if len(items) == 1:
        return items[0]
    before = [x for x in signs[:-1] if x]
    turns = before and all(x * signs[-1] < 0 for x in before)
    conj = "but" if turns and rng.random() < 0.7 else "and"
    nested = any(f" {c} " in item for item in items for c in ("and", "but"))
    comma = "," if nested or len(items) > 2 and rng.random() < 0.3 else ""
    return ", ".join(items[:-1]) + f"{comma} {conj} {items[-1]}"


class Writer:
    """One reference being written: the MR, the style, and what has been said so far."""

    def __init__(self, slots: dict[str, str], style: str, rng: random.Random):
        self.slots, self.style, self.rng = slots, style, rng
        self.name = slots["name"]
        self.said_type = False
        self._w = STYLE_KEYS.index(style)

    def pick(self, entries: list[Entry], style: int | None = None) -> str | None:
        """A weighted choice among ``entries`` for this style (None if the style has none)."""
        style = self._w if style is None else style
        ok = [(t, w[style]) for t, w in entries if w[style] > 0]
        if not ok:
            return None
        texts, weights = zip(*ok)
        weights = [w ** _EVEN[style] for w in weights]
        return self.rng.choices(texts, weights)[0]

    def has(self, slot: str, role: str) -> bool:
        if slot == "eatType":
            return role == "adj"
        return any(w[self._w] > 0 for _, w in phrasings(slot, self.slots[slot])[role])

    def say(self, slot: str, role: str, rel_ok: bool = True) -> str | None:
        """A phrase for ``slot`` in ``role`` (None when the style has none)."""
        if slot == "eatType":
            self.said_type = True
            head = self.head()
            return f"{article(head)} {head}"
        entries = phrasings(slot, self.slots[slot])[role]
        if not rel_ok:
            entries = [e for e in entries if not e[0].startswith(RELATIVE)]
        text = self.pick(entries)
        if text is None and role == "post":  # every value has a plain-style phrase after a noun
            text = self.pick(entries, STYLE_KEYS.index("p"))
        if text is None:
            return None
        if (
            slot == "food"
            and self.slots.get("eatType") == "coffee shop"
            and role in ("vp", "post")
            and self.rng.random() < 0.6
        ):
            for verb in ("serves ", "serving ", "offers ", "offering "):
                if verb in text and "also" not in text:
                    text = text.replace(verb, "also " + verb, 1)
        if "{dishes}" in text:
            dishes = self.rng.sample(DISHES[self.slots["food"]].split("|"), 2)
            joint = " or " if any(" and " in d for d in dishes) else " and "
            text = text.replace("{dishes}", joint.join(dishes))
        return text.replace("{near}", self.slots.get("near", ""))

    def head(self) -> str:
        return self.pick(HEADS[self.slots.get("eatType", "")]) or "place"

    def p_pre(self, slot: str) -> float:
        if slot == "food":
            return _P_PRE[("food", self.slots.get("eatType", ""))]
        return _P_PRE.get(self.slots[slot], 0.3) if slot != "near" else 0.0

    def sign(self, slots: list[str]) -> int:
        return sum(POLARITY.get((s, self.slots[s]), 0) for s in slots)

    def noun_phrase(
        self, slots: list[str], det: bool = True, max_pre: int = 2, rel_ok: bool = True
    ) -> str:
        """ "a cheap riverside pub near X": every slot of ``slots`` before or after the noun."""
        rng = self.rng
        self.said_type |= "eatType" in slots
        pre, post, rel = [], [], None if rel_ok else ""
        for s in (s for s in slots if s != "eatType"):
            boost = 1.6 if self.style == "t" else 1.0
            if len(pre) < max_pre and rng.random() < self.p_pre(s) * boost and self.has(s, "pre"):
                pre.append(s)
                continue
            phrase = self.say(s, "post", rel_ok=rel is None)
            if phrase is None:
                raise ValueError(f"No phrasing of {s}[{self.slots[s]}] fits after a noun.")
            if phrase.startswith(RELATIVE):
                rel = phrase
            else:
                post.append(phrase)
        words = [self.say(s, "pre") for s in sorted(pre, key=_ADJ_ORDER.index)]
        n_eval = sum(s in _EVALUATIVE for s in pre)
        if self.style in _FLUFF and rng.random() < 0.2 and not n_eval:
            words.insert(0, rng.choice(_FLUFF[self.style].split("|")))
            n_eval = 1
        core = " ".join(x for x in [", ".join(words[:n_eval]), *words[n_eval:], self.head()] if x)
        withs = [p[5:] for p in post if p.startswith("with ")]
        post = [p for p in post if not p.startswith("with ")]
        if withs:
            post.append("with " + " and ".join(withs))
        text = " ".join([core, *post] + ([rel] if rel else []))
        return f"{article(text)} {text}" if det else text

    def predicates(self, slots: list[str], also: bool = False, plural: bool = False) -> str:
        """ "is cheap and family-friendly" or "serves Italian food, has low prices and is cheap"."""
        rng = self.rng
        common = [
            m
            for m, w in (("adj", 3), ("np", 1))
            for _ in range(w)
            if all(self.has(s, m) for s in slots)
        ]
        uniform = rng.choice(common) if len(slots) > 1 and common and rng.random() < 0.45 else None
        units: list[tuple[str, str, int]] = []
        together = "area" in slots and "near" in slots and rng.random() < 0.6
        for s in slots:
            if together and s in ("area", "near"):  # "is located in the city centre near X"
                if s == "area":
                    where = f"{self.say('area', 'post')} {self.say('near', 'post')}"
                    lead = (
                        ""
                        if where.startswith(("located", "situated"))
                        else rng.choice(["", "located "])
                    )
                    units.append(("adj", lead + where, 0))
                continue
            modes = [(m, w) for m, w in (("adj", 4), ("vp", 3), ("np", 1.5)) if self.has(s, m)]
            mode = uniform or rng.choices(*zip(*modes))[0]
            phrase = self.say(s, mode)
            if mode == "vp" and phrase.startswith("has "):
                mode, phrase = "np", phrase[4:]
            units.append((mode, phrase, self.sign([s])))
        if uniform == "adj":  # "located by the river and near X", not "... and located near X"
            seen: set[str] = set()
            for i, (mode, phrase, sign) in enumerate(units):
                first, _, rest = phrase.partition(" ")
                if first in ("located", "situated") and first in seen and rest:
                    units[i] = (mode, rest, sign)
                seen.add(first)
        merged: list[tuple[str, str, int]] = []
        for mode in dict.fromkeys(u[0] for u in units):  # one "is ..." and one "has ..." unit
            same = [u for u in units if u[0] == mode]
            if mode == "vp":
                merged += same
            else:
                merged.append(
                    (
                        mode,
                        join_list([u[1] for u in same], [u[2] for u in same], rng),
                        sum(u[2] for u in same),
                    )
                )
        units = merged
        texts = []
        for i, (mode, phrase, sign) in enumerate(units):
            adverb = "also " if also and i == 0 and "also " not in phrase else ""
            if mode == "adj":
                texts.append(f"is {adverb}{phrase}")
            elif mode == "np":
                verb = "boasts" if self.style == "a" and sign > 0 and rng.random() < 0.4 else "has"
                texts.append(f"{adverb}{verb} {phrase}")
            elif adverb and phrase.startswith(("can ", "is ")):
                first, rest = phrase.split(" ", 1)
                texts.append(f"{first} also {rest}")
            else:
                texts.append(adverb + phrase)
        if plural:  # "they serve ... and have ...": the writer calls the venue "they"
            texts = [_pluralise(t) for t in texts]
        return join_list(texts, [u[2] for u in units], rng)

    def front(self, slots: list[str]) -> tuple[str, list[str]]:
        """A fronted phrase for one or two slots of ``slots``, and the slots left."""
        can = [s for s in slots if s != "eatType" and self.has(s, "front")]
        places = [s for s in can if s in ("area", "near")]
        chosen = (
            places
            if len(places) == 2 and self.rng.random() < 0.5
            else [self.rng.choice(places or can)]
        )
        phrases = [self.say(s, "front") for s in chosen]
        text = phrases[0] + "".join(" and " + p[:1].lower() + p[1:] for p in phrases[1:])
        return text, [s for s in slots if s not in chosen]
