"""Phrasings of the ``food`` slot: seven cuisines, each also named through a few of its dishes.

See :mod:`lorakit.data.e2e_phrases` for the roles and :mod:`lorakit.data.phrase_table` for the
weights. ``FN`` in a phrase stands for a noun phrase of the cuisine ("Italian food", "Italian
cuisine", "Italian classics like risotto and pasta").
"""

from __future__ import annotations

from lorakit.data.phrase_table import Entry, fill, parse_table

DISHES = {
    "English": "fish and chips|Sunday roasts|roast beef|shepherd's pie|bangers and mash|"
    "steak and ale pie|toad in the hole|ploughman's lunches|Yorkshire puddings|"
    "cottage pie|bread and butter pudding|sticky toffee pudding|Lancashire hotpot",
    "French": "croissants|crêpes|coq au vin|bouillabaisse|ratatouille|cassoulet|onion soup|"
    "boeuf bourguignon|quiche lorraine|tarte tatin|soufflés|duck confit|moules",
    "Italian": "pasta|pizza|risotto|lasagne|tiramisu|gnocchi|ravioli|bruschetta|carbonara|"
    "minestrone|focaccia|antipasti|osso buco|panna cotta",
    "Chinese": "dim sum|chow mein|Peking duck|spring rolls|wontons|kung pao chicken|"
    "sweet and sour pork|hot and sour soup|char siu|egg fried rice|bao buns",
    "Indian": "curries|biryani|tandoori chicken|samosas|onion bhajis|dhal|naan bread|"
    "chicken tikka|korma|vindaloo|pakoras|saag paneer|rogan josh",
    "Japanese": "sushi|sashimi|ramen|tempura|teriyaki|udon noodles|miso soup|gyoza|"
    "katsu curry|yakitori|edamame|onigiri|tonkatsu",
    "Fast food": "burgers|fries|hot dogs|milkshakes|fried chicken|chicken nuggets|"
    "cheeseburgers|onion rings|chicken wings|wraps|loaded fries",
}

_FOOD = """
pre: F
post: serving FN | 6 g2 c2 a2 t3
post: that serves FN | 3 g1 c1 a2 t0
post: which serves FN | 1 t0
post: offering FN | 1 g6 a3 c0
post: specialising in FN | 0 g3 a2
post: with MENU | 1 t3
post: known for its FN | 0 c2 a3
post: where you can get FN | 0 c4
post: dishing up FN | 0 c2 a2
vp: serves FN | 8 g2 c2 a3 t3
vp: offers FN | 2 g6 a3 c0
vp: provides FN | 0 g3
vp: specialises in FN | 1 g4 a2
vp: has MENU | 2 t4
vp: does FN | 0 c5
vp: dishes up FN | 0 c2 a2
vp: focuses on FN | 0 g2
vp: sells FN | 1 t2 c2
vp: cooks up FN | 0 c2
vp: serves up FN | 0 c3 a2
vp: prepares FN | 0 g2
vp: rustles up FN | 0 c2
vp: showcases FN | 0 a2 g1
vp: celebrates FN | 0 a2
vp: champions FN | 0 g1 a1
vp: is famed for its FN | 0 a1 g1
vp: turns out FN | 0 c1
vp: whips up FN | 0 c2
vp: brings you FN | 0 a4
np: FN | 6
np: MENU | 2 t4
clause: on the menu you will find FN | 0 c2 g2
clause: the menu features FN | 0 g2 t2
clause: you can enjoy FN | 0 a4
front: Serving FN | 2 g4 a3
front: Specialising in FN | 0 g3 a2
front: Known for its FN | 0 c2 a3
front: Offering FN | 0 g3 a2"""
_CUISINE_FN = """
np: F food | 8 g1 c5 a1 t8
np: F cuisine | 0 g8 a4
np: F dishes | 2 c2 a2
np: F cooking | 0 c3 g2
np: F fare | 0 g2 t1
np: F food such as {dishes} | 1 c2 a2 t0
np: F classics like {dishes} | 0 c2 a1
np: authentic F cuisine | 0 a6
np: delicious F dishes | 0 a3
np: F grub | 0 c2
np: F meals | 1
np: F specialities | 0 g2 a2
np: classic F dishes | 1 g1 c1 a1
np: traditional F dishes | 0 g2 a2
np: home-style F cooking | 0 c2
np: F favourites | 0 c2 a1
np: F-inspired dishes | 0 a2
np: F cookery | 0 g1"""
_CUISINE_CLAUSES = """
clause: the food is F | 2 t3
clause: the menu is F | 1 g2
clause: the cooking is F | 0 g1"""
_FAST_FN = """
np: fast food | 8
np: fast food such as {dishes} | 1 c2 a2
np: fast-food favourites like {dishes} | 0 c2 a2"""


def food_phrasings(value: str) -> dict[str, list[Entry]]:
    fast = value == "Fast food"
    adjective = "fast-food" if fast else value
    menu = f"{'an' if adjective[0] in 'AEIOU' else 'a'} {adjective} menu"
    spec = _FOOD + ("" if fast else _CUISINE_CLAUSES)
    spec_fn = (_FAST_FN if fast else _CUISINE_FN).replace("F-", f"{value}-")
    fns = parse_table(spec_fn.replace("F ", f"{value} "))["np"]
    if value == "English":
        fns += parse_table(
            "np: traditional British food | 0 g2 a1\nnp: British classics like {dishes} | 0 c1 a1"
        )["np"]
    spec = spec.replace("MENU", menu).replace("pre: F", f"pre: {adjective}")
    return fill(parse_table(spec.replace("is F", f"is {value}")), "FN", fns)
