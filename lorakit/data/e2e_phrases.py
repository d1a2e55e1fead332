"""Phrasings of every slot value, by the place they take in a sentence (the generator's lexicon).

For each slot value, :func:`phrasings` gives phrases for seven roles:

* ``pre``: a modifier before the noun ("a *cheap* pub");
* ``post``: a phrase after the noun ("a pub *with low prices*"; ones starting "that", "which",
  "where" or "known for" come last);
* ``adj``: what follows "is" ("it is *in the riverside area*");
* ``vp``: a verb phrase, third person singular ("it *serves Italian food*");
* ``np``: a noun phrase for "it has ..." ("*a high customer rating*");
* ``clause``: a clause of its own ("*Prices are low*", "*Customers rate it highly*");
* ``front``: a phrase that can open a sentence ("*Close to the Clock Tower*, ...").

Every phrase has a weight for each writer style (``p`` plain, ``g`` guide-book, ``c`` chatty
reviewer, ``a`` advertising, ``t`` terse), written ``text | 3 g6 c0``: weight 3, but 6 for the
guide-book writer and never for the chatty one (:mod:`lorakit.data.phrase_table`). Each style
thus has its own favourite phrasings, and the unequal weights keep the set learnable. Phrases
hold ``{near}`` for the landmark and ``{dishes}`` for two dishes of the cuisine.
"""

from __future__ import annotations

from functools import cache

from lorakit.data.e2e_food import food_phrasings
from lorakit.data.e2e_scales import price_phrasings, rating_phrasings
from lorakit.data.phrase_table import Entry, parse_table

HEADS: dict[str, list[Entry]] = {
    k: parse_table(v)["np"]
    for k, v in {
        "restaurant": "np: restaurant",
        "coffee shop": "np: coffee shop | 5 g3 c3 a2 t5\nnp: café | 2 g3 c5 a4 t3\n"
        "np: coffee house | 1 g3 a3 c0 t0",
        "pub": "np: pub | 8 g4\nnp: public house | 0 g3",
        "": "np: place | 4 g1 c3\nnp: venue | 3 g4 a3\nnp: spot | 0 c3 a2\nnp: eatery | 2 t3\n"
        "np: establishment | 0 g4\nnp: joint | 0 c2",
    }.items()
}
"""The noun for each eatType; ``""`` holds the nouns used when the MR has no eatType."""

_AREA = {
    "city centre": """
pre: city-centre | 3 g0 a0 t5
pre: central | 2 g3 a2
pre: city centre | 3 g0 a0 c1 t4
adj: in the city centre | 4 g0 c0 a0 t2
adj: located in the city centre | 2 g0 c0 a0
adj: in the centre of the city | 3 g2 c0
adj: in the centre of town | 2 c2 g0 a0
adj: situated in the centre of the city | 0 g5
adj: in the heart of the city | 0 g3 a6
adj: centrally located | 0 g3 a2
adj: right in the middle of town | 0 c4
adj: in the town centre | 2 c3 g0 a0
adj: right in the centre of town | 0 c2 a2
adj: in the bustling city centre | 0 a3 c1
adj: in the city's centre | 0 g1
adj: tucked away in the centre of town | 0 c2
adj: nestled in the heart of the city | 0 a3 g1
adj: set in the heart of the city | 0 g2 a1
adj: in the middle of the city | 1 c1 t0
adj: based in the city centre | 1 t2 c0
vp: sits in the centre of town | 0 c2 g1
vp: can be found in the city centre | 2 c0 g0 a0
np: a city-centre location | 1 g2
np: a central location | 0 g3 a3
clause: you will find it in the middle of town | 0 c3
post: in the city centre | 4 g0 c0 a0 t2
post: in the centre of the city | 3 g2 c0
post: in the centre of town | 2 c2 g0 a0
post: in the heart of the city | 0 a6 g3
post: located in the city centre | 1 g0 c0 a0
post: in the town centre | 2 c3 g0 a0
post: right in the middle of town | 0 c3
front: In the city centre | 3 g0 c0 a0
front: Located in the city centre | 2 g0 c0 a0
front: In the heart of the city | 0 a4 g2
front: Right in the centre of town | 0 c3
front: Situated in the centre of the city | 0 g4""",
    "riverside": """
pre: riverside | 5
adj: in the riverside area | 6 g1 c1 a0 t2
adj: by the river | 3 c3 a1 t3
adj: on the riverside | 2 g4
adj: located by the river | 2 g1
adj: located in the riverside area | 3 g0 c0 a0
adj: situated on the riverside | 0 g4
adj: right on the river | 0 c3
adj: on the river bank | 1 g3
adj: on the banks of the river | 0 g2 a2
adj: alongside the river | 0 g2
adj: on the river's edge | 0 g1 a1
adj: beside the river | 0 g1
adj: perched on the river bank | 0 a2 g1
adj: nestled by the river | 0 a2
adj: set on the riverside | 0 g2
adj: tucked away by the river | 0 c2
adj: on the riverfront | 0 a2 g1
adj: down by the river | 0 c4
adj: on the waterfront | 0 a5 g1
vp: overlooks the river | 0 g3 a4
vp: sits by the river | 1 c2
vp: can be found by the river | 1
vp: enjoys a riverside setting | 0 a3 g1
np: a riverside location | 2 g2 c1
np: a riverside setting | 0 g2 a2
post: by the river | 4 c3 a1
post: in the riverside area | 6 g1 c1 a0 t2
post: on the riverside | 2 g4
post: overlooking the river | 0 g3 a4
post: on the river bank | 1 g2
post: down by the river | 0 c4
post: on the waterfront | 0 a4
front: By the river | 2
front: On the riverside | 1 g3
front: Located by the river | 2
front: Overlooking the river | 0 g3 a3
front: In the riverside area | 2 g0 c0 a0
front: Down by the river | 0 c3""",
}
_FAMILY = {
    "yes": """
pre: family-friendly | 6 c2 a3
pre: child-friendly | 1 g3
pre: kid-friendly | 0 c4 t2
pre: family friendly | 3 g0 a0
adj: family friendly | 6 g0 c1 a0 t2
adj: family-friendly | 3 g2 c2 a2 t6
adj: kid friendly | 2 g0 a0 t1
adj: child-friendly | 1 g4
adj: kid-friendly | 0 c4 t2
adj: suitable for families | 0 g3
adj: good for families | 1 c2
adj: great for kids | 0 c4
adj: ideal for families | 0 a4
adj: perfect for families | 0 a4
adj: a hit with families | 0 c2 a2
adj: welcoming to children | 0 g2
vp: welcomes families | 1 g4
vp: welcomes children | 1 g3
vp: caters for families | 0 g3
vp: welcomes the whole family | 0 a4
vp: welcomes little ones | 0 a2 c1
vp: welcomes all ages | 0 a1 g1
np: a family-friendly atmosphere | 0 a2 g1
clause: children are welcome | 2 g4 c1 a1
clause: families are welcome | 1 g2
clause: kids are welcome | 0 c4
clause: you can bring the kids | 0 c3
clause: children are always welcome | 0 a5
clause: the little ones are welcome too | 0 c2
post: that welcomes families | 1 g2
post: where children are welcome | 1 g2 c1
post: suitable for families | 1 g2
post: for the whole family | 0 a4
front: Family-friendly | 1 t0
front: Perfect for families | 0 a3""",
    "no": """
pre: adults-only | 0 a5 t2
adj: not family friendly | 6 g0 c0 a0 t1
adj: not family-friendly | 3 g1 c1 a1 t3
adj: not kid friendly | 2 g0 c0 a0
adj: not child-friendly | 1 g2
adj: not kid-friendly | 0 c2 t1
adj: not suitable for children | 1 g5
adj: not really aimed at families | 0 c3
adj: better suited to adults | 0 g3
adj: a haven for grown-ups | 0 a2 c1
adj: strictly for adults | 0 g1 a1
adj: child-free | 0 t1 g1
adj: adults only | 0 t5 a2
adj: not ideal for kids | 0 c2
adj: not the place for children | 0 c2
adj: not one for the kids | 0 c3
vp: does not welcome children | 1 g2
vp: does not cater for families | 0 g3
clause: children are not welcome | 1 g1 c0
clause: it is not a place for kids | 0 c3
post: that is not family friendly | 1 g0 c0 a0
post: where children are not welcome | 1 g2
post: for adults | 1 g3 a4""",
}
_NEAR = """
adj: near {near} | 8 g1 c2 a1 t6
adj: located near {near} | 3 g1 c1 a1
adj: close to {near} | 2 g5 a2
adj: not far from {near} | 1 c3
adj: just around the corner from {near} | 0 c4
adj: situated close to {near} | 0 g4
adj: a short walk from {near} | 0 g3 a3
adj: a stone's throw from {near} | 0 c3 a2
adj: within walking distance of {near} | 0 g3
adj: next to {near} | 1 t3
adj: across the road from {near} | 0 c2
adj: round the corner from {near} | 0 c2 t1
adj: a five-minute walk from {near} | 0 c2 g1
adj: a short stroll from {near} | 0 a2 g1
adj: just up the road from {near} | 0 c2
adj: handy for {near} | 0 c2
adj: opposite {near} | 0 t1 c1
adj: a couple of minutes from {near} | 0 c1
adj: right on the doorstep of {near} | 0 a1 c1
adj: right next to {near} | 0 c2
adj: just minutes from {near} | 0 a5
vp: can be found near {near} | 2 c1
vp: sits close to {near} | 0 g2
clause: {near} is nearby | 0 g2 t2
clause: {near} is just around the corner | 0 c3
clause: you will find it near {near} | 0 c3
clause: {near} is only a short walk away | 0 g2 a2
post: near {near} | 8 g1 c2 a1 t6
post: close to {near} | 2 g5 a2
post: not far from {near} | 1 c3
post: a short walk from {near} | 0 g3 a3
post: next to {near} | 1 t3
post: just down the road from {near} | 0 c3
post: in the vicinity of {near} | 0 g3
post: just minutes from {near} | 0 a5
post: a stone's throw from {near} | 0 c2 a2
front: Near {near} | 3 g1 a1
front: Close to {near} | 2 g4
front: Just a short walk from {near} | 0 a3 g1
front: Not far from {near} | 1 c2
front: A stone's throw from {near} | 0 c3 a2
front: Located near {near} | 1
front: Just around the corner from {near} | 0 c3
front: Just minutes from {near} | 0 a3"""


@cache
def phrasings(slot: str, value: str) -> dict[str, list[Entry]]:
    """``{role: [(text, weights), ...]}`` for one slot value (``near``: any landmark)."""
    if slot == "food":
        return food_phrasings(value)
    if slot == "priceRange":
        return price_phrasings(value)
    if slot == "customer rating":
        return rating_phrasings(value)
    if slot == "area":
        return parse_table(_AREA[value])
    if slot == "familyFriendly":
        return parse_table(_FAMILY[value])
    if slot == "near":
        return parse_table(_NEAR)
    raise KeyError(
        f"No phrasings for slot {slot!r}; the generator phrases food, priceRange, "
        "customer rating, area, familyFriendly and near (eatType is the noun)."
    )
