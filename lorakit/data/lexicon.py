"""The slot-value lexicon of the E2E task: E2E's values, and how a text expresses each of them.

E2E's meaning representations (Novikova et al. 2017) use eight slots. ``name`` and ``near`` take
free text (a venue and a landmark); the other six take a closed set of values (:data:`VALUES`).
This module holds, for every closed value, regular expressions that recognise the ways people
write it ("cheap", "inexpensive", "low prices" for ``priceRange[cheap]``). They are written for
E2E's own values, so they work on the real E2E references as well as on the synthetic set, and
they are what the slot error rate (:func:`lorakit.evaluate.slot_error_rate`) looks for.

:func:`find_values` returns every value a text expresses. Matching is case-insensitive and goes
in a fixed order, each match blanking its span so a later pattern cannot match inside it:
negated phrasings first ("not family-friendly" before "family-friendly", "not highly rated"
before "highly rated"), exact figures before words ("less than £20" before "cheap").
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from lorakit.data.records import parse_mr

VALUES: dict[str, tuple[str, ...]] = {
    "eatType": ("restaurant", "coffee shop", "pub"),
    "food": ("English", "French", "Italian", "Chinese", "Indian", "Japanese", "Fast food"),
    "priceRange": ("cheap", "moderate", "high", "less than £20", "£20-25", "more than £30"),
    "customer rating": ("low", "average", "high", "1 out of 5", "3 out of 5", "5 out of 5"),
    "area": ("city centre", "riverside"),
    "familyFriendly": ("yes", "no"),
}
"""E2E's closed slots and their values, as E2E writes them in its MRs."""

# A figure and the word that means the same: a text saying "cheap" for priceRange[less than £20]
# or "highly rated" for customer rating[5 out of 5] expresses the slot correctly.
COMPATIBLE: dict[str, dict[str, str]] = {
    "priceRange": {"less than £20": "cheap", "£20-25": "moderate", "more than £30": "high"},
    "customer rating": {"1 out of 5": "low", "3 out of 5": "average", "5 out of 5": "high"},
}

# Whether a value is good news for a diner (+1), bad news (-1) or neither (0). Writers join
# values of opposite sign with "but" ("cheap but poorly rated"); the generator does too.
POLARITY: dict[tuple[str, str], int] = {
    ("priceRange", "cheap"): 1,
    ("priceRange", "less than £20"): 1,
    ("priceRange", "high"): -1,
    ("priceRange", "more than £30"): -1,
    ("customer rating", "high"): 1,
    ("customer rating", "5 out of 5"): 1,
    ("customer rating", "low"): -1,
    ("customer rating", "1 out of 5"): -1,
    ("familyFriendly", "yes"): 1,
    ("familyFriendly", "no"): -1,
}

_KIDS = r"(?:kids|children|families|family|little ones|youngsters|toddlers|all ages)"
_RATE_WORDS = r"(?:rated|rating|ratings|reviewed|reviews?|scores?|marks|feedback)"
_INTENSIFIER = r"(?:(?:very|quite|really|pretty|fairly|rather)\s+)?"
_WORDS3 = r"(?:(?!and\b|but\b|or\b)\w+\s+){0,3}?"  # up to three words, not across "and"
_LINK = r"(?:\s+(?:it|them|us|is|was|as|are|of))*\s+" + _INTENSIFIER


def _amount(op: str, figure: str, word: str) -> str:
    money = rf"(?:£\s?{figure}\b|{figure}\s?(?:pounds|gbp|£)|{word} pounds)"
    return rf"\b(?:{op})\s+{money}"


def _stars(digit: str, word: str) -> str:
    n = rf"(?:{digit}|{word})"
    return (
        rf"\b{n}\s?(?:out of|/)\s?(?:5|five)\b|\b{n}[- ]stars?\b|"
        rf"\brat(?:ed|ing)(?:\s+(?:of|is|was))?\s+{n}\b(?!\s?-)"
    )


# (slot, value, pattern), in matching order.
PATTERNS: list[tuple[str, str, str]] = [
    (
        "familyFriendly",
        "no",
        rf"(?:\bnot|n't|\bnever|\bnon)[- ]+(?:\w+[- ]+){{0,2}}?(?:family|kids?|child|children)"
        rf"[- ]?friendly\b|\b(?:adults?|grown-?ups?)[- ]only\b|\bno\s+{_KIDS}\b|"
        rf"(?:\bnot|n't|\bnever)\s+{_WORDS3}(?:for|at|welcom\w*|allow\w*|admit\w*|cater\w*"
        rf"(?:\s+(?:for|to))?|suit\w*(?:\s+(?:for|to))?|take|accommodat\w*)\s+(?:\w+\s+){{0,2}}?"
        rf"{_KIDS}\b|\b{_KIDS}\s+(?:are|is)\s+not\s+(?:\w+\s+)?(?:welcome|allowed|permitted)\b|"
        rf"\bchild[- ]free\b|\bunsuitable\s+for\s+{_KIDS}\b|\bleave\s+the\s+(?:kids|children|"
        rf"little ones)\b|\b(?:for|to|at|towards)\s+(?:an?\s+)?(?:adults?|grown-?ups)\b",
    ),
    (
        "familyFriendly",
        "yes",
        rf"\b(?:family|kids?|child|children)[- ]?friendly\b|\bwelcom\w*\s+(?:\w+\s+){{0,2}}?"
        rf"{_KIDS}\b|\b{_KIDS}\s+(?:are|is)\s+(?:\w+\s+)?welcome\b|\b(?:suitable|ideal|good|great|"
        rf"perfect|fine|aimed|geared|designed|made)\s+(?:\w+\s+){{0,2}}?for\s+(?:\w+\s+){{0,2}}?"
        rf"{_KIDS}\b|\bcater\w*\s+(?:\w+\s+){{0,2}}?(?:for|to)\s+(?:\w+\s+)?{_KIDS}\b|"
        rf"\ba\s+hit\s+with\s+{_KIDS}\b|\bbring\s+(?:along\s+)?(?:the|your)\s+(?:whole\s+)?"
        rf"(?:kids|children|family|little ones)|"
        rf"\bfor\s+the\s+whole\s+family\b",
    ),
    (
        "priceRange",
        "less than £20",
        _amount("less than|under|below|no more than|not more than|lower than|up to", "20", "twenty")
        + r"|<\s?£\s?20\b|£\s?20\s+or\s+(?:less|under)",
    ),
    (
        "priceRange",
        "£20-25",
        r"£\s?20\s?(?:-|–|to|and)\s?£?\s?25\b|\b20\s?(?:-|–|to)\s?25\s?(?:pounds|gbp|£)|"
        r"\bbetween\s+£?\s?20\s+and\s+£?\s?25\b|\b(?:between\s+)?twenty (?:to|and) twenty-five "
        r"pounds",
    ),
    (
        "priceRange",
        "more than £30",
        _amount(
            "more than|over|above|upwards of|at least|in excess of|higher than|greater than",
            "30",
            "thirty",
        )
        + r"|£\s?30\s?(?:\+|or more|plus|and (?:up|over|above))",
    ),
    ("customer rating", "1 out of 5", _stars("1", "one")),
    ("customer rating", "3 out of 5", _stars("3", "three")),
    ("customer rating", "5 out of 5", _stars("5", "five")),
    (
        "customer rating",
        "low",
        rf"(?:\bnot|n't)\s+(?:very\s+)?(?:well|highly)[- ](?:rated|reviewed|regarded)\b|"
        rf"\bthumbs\s+down\b|\blow(?:ly)?[- ](?:customer[- ])?{_RATE_WORDS}\b|"
        rf"\b(?:poor|bad)(?:ly)?[- ]"
        rf"(?:customer[- ])?{_RATE_WORDS}\b|\b(?:disappointing|negative|lukewarm|unfavourable|"
        rf"dismal|weak|scathing)\s+(?:customer\s+)?{_RATE_WORDS}\b|\b(?:rat(?:e|es|ed|ing)|scores?|"
        rf"reviews?){_LINK}(?:low(?:ly)?|poorly|badly|poor)\b",
    ),
    (
        "customer rating",
        "average",
        rf"\baverage(?:ly)?[- ](?:customer[- ])?{_RATE_WORDS}\b|\b(?:middling|mixed|mediocre|"
        rf"so-so|lukewarm|ordinary|unremarkable)\s+(?:customer\s+)?{_RATE_WORDS}\b|"
        rf"\b(?:rat(?:e|es|ed|ing)|scores?|reviews?){_LINK}(?:average|mixed|middling)\b",
    ),
    (
        "customer rating",
        "high",
        rf"\bhigh(?:ly)?[- ](?:customer[- ])?{_RATE_WORDS}\b|\bhighly regarded\b|\btop[- ]rated\b|"
        rf"\bwell[- ](?:rated|reviewed|regarded|liked)\b|\b(?:excellent|glowing|great|rave|stellar|"
        rf"outstanding|superb|strong|positive|fantastic|brilliant)\s+(?:customer\s+)?{_RATE_WORDS}"
        rf"\b|\btop\s+marks\b|\bthumbs\s+up\b|\bmuch-loved\b|\bbeloved\b|"
        rf"\b(?:rat(?:e|es|ed|ing)|scores?|reviews?){_LINK}(?:high(?:ly)?|excellent|glowing|"
        rf"superb)\b",
    ),
    (
        "priceRange",
        "moderate",
        r"(?:\bnot|n't)\s+(?:too|very|overly)\s+(?:expensive|pricey|cheap)\b|\bmoderate(?:ly)?\b|"
        r"\bmid[- ]?(?:range|priced|price)\b|\breasonabl[ey](?:[- ]priced)?\b|"
        r"\b(?:modestly|sensibly)[- ]priced\b|"
        r"\bfair(?:ly)?[- ]priced\b|\bfair prices\b|\baverage(?:ly)?[- ]pric(?:e|es|ed|ing)\b|"
        r"\bpric(?:e|es|ing)(?:\s+range)?\s+(?:is|are)\s+(?:\w+\s+)?(?:average|reasonable|fair)\b",
    ),
    (
        "priceRange",
        "cheap",
        r"\bcheap\w*|\binexpensive\b|\b(?:budget|wallet|pocket)[- ]friendly\b|\bbudget\b|"
        r"\baffordabl[ey]\b|\blow[- ](?:cost|priced|price|prices|pricing)\b|\bbargain\w*|"
        r"\brock-bottom\b|"
        r"\b(?:won'?t|will\s+not)\s+break\s+the\s+bank\b|\beasy\s+on\s+the\s+(?:wallet|pocket)\b|"
        r"\bpric(?:e|es|ing)(?:\s+range)?\s+(?:is|are)\s+(?:\w+\s+){0,3}?low\b|\bprices\s+low\b",
    ),
    (
        "priceRange",
        "high",
        r"\bexpensive\b|\bpric[e]?y\b|\bhigh[- ]?(?:end|priced|price|prices|pricing|cost)\b|"
        r"\bup(?:market|scale)\b|\bcostly\b|\bpremium\s+pric\w+|\bsplurge\b|\bluxur(?:y|ious)\b|"
        r"\bsplash\s+out\b|\bpretty\s+penny\b|\bpricier\b|"
        r"\bpric(?:e|es|ing)(?:\s+range)?\s+(?:is|are)\s+(?:\w+\s+){0,3}?high\b",
    ),
    (
        "food",
        "Fast food",
        r"\bfast[- ]food\b|\bburgers?\b|\b(?:french\s+)?fries\b|\bhot\s+dogs?\b|\bmilkshakes?\b|"
        r"\bfried\s+chicken\b|\bchicken\s+nuggets\b",
    ),
    (
        "food",
        "English",
        r"\benglish\b|\bbritish\b|\bfish\s+and\s+chips\b|\bsunday\s+roasts?\b|\broast\s+beef\b|"
        r"\bshepherd'?s\s+pie\b|\bbangers\s+and\s+mash\b|\bsteak\s+and\s+kidney\b",
    ),
    (
        "food",
        "French",
        r"\bfrench\b|\bcroissants?\b|\bcr[eê]pes?\b|\bcoq\s+au\s+vin\b|\bbouillabaisse\b|"
        r"\bratatouille\b|\bescargots?\b|\bcr[eè]me\s+br[uû]l[eé]e\b",
    ),
    (
        "food",
        "Italian",
        r"\bitalian\b|\bpasta\b|\bpizzas?\b|\brisottos?\b|\blasagnes?\b|\btiramisu\b|\bgnocchi\b",
    ),
    (
        "food",
        "Chinese",
        r"\bchinese\b|\bdim\s+sum\b|\bchow\s+mein\b|\bpeking\s+duck\b|\bspring\s+rolls?\b|"
        r"\bsweet\s+and\s+sour\b|\bwontons?\b",
    ),
    (
        "food",
        "Indian",
        r"\bindian\b|\bcurr(?:y|ies)\b|\bbiryanis?\b|\btandoori\b|\bnaan\b|\bmasala\b|\bsamosas?\b|"
        r"\bbhajis?\b|\bdhal\b",
    ),
    (
        "food",
        "Japanese",
        r"\bjapanese\b|\bsushi\b|\bsashimi\b|\bramen\b|\btempura\b|\bteriyaki\b|\budon\b|"
        r"\bbento\b|\bmiso\b",
    ),
    ("eatType", "coffee shop", r"\bcoffee[- ]?(?:shop|house|bar)s?\b|\bcaf[eé]s?\b"),
    ("eatType", "pub", r"\bpubs?\b|\bpublic\s+houses?\b|\bgastropubs?\b|\btaverns?\b|\binns?\b"),
    ("eatType", "restaurant", r"\brestaurants?\b|\bbistros?\b|\bbrasseries?\b"),
    (
        "area",
        "city centre",
        r"\bcity[- ]?cent(?:re|er)\b|\b(?:town|city)'?s?\s+(?:cent(?:re|er)|heart)\b|"
        r"\bcent(?:re|er)\s+of\s+(?:the\s+)?(?:city|town)\b|\btown[- ]cent(?:re|er)\b|"
        r"\b(?:heart|middle)\s+of\s+(?:the\s+)?(?:city|town)\b|\bcentral(?:ly)?\b|\bdowntown\b",
    ),
    ("area", "riverside", r"\briver\w*|\bwaterfront\b|\bwater'?s\s+edge\b"),
]

_COMPILED = [(slot, value, re.compile(p, re.IGNORECASE)) for slot, value, p in PATTERNS]

# A landmark the text puts the venue near: a word of place, then a capitalised name.
_NEAR_RE = re.compile(
    r"(?i:\b(?:near|close to|next to|beside|opposite|handy for|"
    r"(?:a)?round the corner from|"
    r"(?:walk|stroll|walking distance|stone's throw|minutes?|road|far|distance)\s+"
    r"(?:away\s+)?(?:from|of)|vicinity of|doorstep of))\s+(?:[Tt]he\s+)?[A-Z][\w']*"
)


def _blank(text: str, spans: Iterable[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in spans:
        chars[start:end] = "#" * (end - start)
    return "".join(chars)


def literal_spans(text: str, phrase: str) -> list[tuple[int, int]]:
    """Where ``phrase`` occurs in ``text`` (case-insensitive, whole words), as (start, end)."""
    if not phrase.strip():
        return []
    pattern = re.compile(rf"(?<!\w){re.escape(phrase.strip())}(?!\w)", re.IGNORECASE)
    return [m.span() for m in pattern.finditer(text)]


def find_values(text: str, literals: Iterable[str] = ()) -> dict[str, list[str]]:
    """Every closed-slot value the text expresses, as ``{slot: [values, in the order found]}``.

    Parameters
    ----------
    text : a description, e.g. a reference or a system output.
    literals : free-text values (the venue's name, the landmark) to blank out first, so that a
        name like "The Riverside Inn" does not count as ``area[riverside]`` and ``eatType[pub]``.

    A ``"near"`` entry lists the capitalised place names that follow a word of place ("near",
    "close to", "a short walk from", ...) after the literals are blanked: a landmark the text
    mentions that is not one of ``literals``.
    """
    masked = _blank(text, [s for lit in literals for s in literal_spans(text, lit)])
    others = [m.group(0) for m in _NEAR_RE.finditer(masked)]  # before "Café" counts as a café
    found: dict[str, list[str]] = {}
    for slot, value, regex in _COMPILED:
        spans = [m.span() for m in regex.finditer(masked)]
        if spans:
            found.setdefault(slot, []).append(value)
            masked = _blank(masked, spans)
    if others:
        found["near"] = others
    return found


def expresses(found: dict[str, list[str]], slot: str, value: str) -> bool:
    """Whether ``find_values``' result says ``slot[value]``, a figure's word counting too."""
    said = found.get(slot, [])
    return value in said or COMPATIBLE.get(slot, {}).get(value) in said


def slot_errors(mr: str | dict[str, str], text: str) -> dict[str, list[str]]:
    """Which slots of ``mr`` the text leaves out, adds or gets wrong.

    Parameters
    ----------
    mr : the meaning representation, as E2E text (``"name[X], food[Italian]"``) or a dict.
    text : the description to check.

    Returns
    -------
    dict : ``{"missing": [...], "added": [...], "wrong": [...]}``, lists of slot names.
        ``name`` and ``near`` are matched literally (case-insensitive); a closed slot is
        missing when no value of it is expressed, wrong when only other values are, added when
        the MR lacks it and the text expresses a value of it. A landmark the text mentions when
        the MR has none is an added ``near``; another landmark instead of the MR's is a wrong one.
    """
    slots = parse_mr(mr) if isinstance(mr, str) else dict(mr)
    literals = [slots[s] for s in ("name", "near") if s in slots]
    found = find_values(text, literals)
    errors: dict[str, list[str]] = {"missing": [], "added": [], "wrong": []}
    for slot in ("name", "near"):
        if slot in slots and not literal_spans(text, slots[slot]):
            errors["wrong" if slot == "near" and "near" in found else "missing"].append(slot)
    if "near" not in slots and "near" in found:
        errors["added"].append("near")
    for slot in VALUES:
        if slot in slots:
            if not expresses(found, slot, slots[slot]):
                errors["wrong" if slot in found else "missing"].append(slot)
        elif slot in found:
            errors["added"].append(slot)
    return errors


def slot_error_rate(mrs: Iterable[str | dict[str, str]], hyps: Iterable[str]) -> float:
    """Slot error rate in percent: (missing + added + wrong) / slots in the MRs x 100.

    The E2E challenge's measure of semantic accuracy (Dušek et al. 2020), with the slot values
    found by :func:`slot_errors`. 0 is perfect; it can pass 100 when texts add many slots.
    """
    if isinstance(hyps, str) or isinstance(mrs, str):
        raise TypeError(
            "Pass a list of MRs and a list of texts, e.g. "
            "slot_error_rate(['name[A], food[Italian]'], ['A serves Italian food.'])."
        )
    mrs, hyps = list(mrs), list(hyps)
    if len(mrs) != len(hyps):
        raise ValueError(f"Give one text per MR: got {len(mrs)} MRs and {len(hyps)} texts.")
    if not mrs:
        raise ValueError("No MRs to score.")
    errors = total = 0
    for mr, hyp in zip(mrs, hyps):
        total += len(parse_mr(mr) if isinstance(mr, str) else mr)
        errors += sum(len(v) for v in slot_errors(mr, hyp).values())
    return 100.0 * errors / total
