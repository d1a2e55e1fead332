"""Two baselines that learn nothing, for the results tables: a template and a retrieval system.

:func:`template_text` is a rule-based realizer of the kind the E2E challenge's baseline systems
were: one fixed sentence plan and one phrasing per slot value. It says every slot of the MR and
nothing else, so its slot error rate is 0 by construction; what it cannot do is vary the plan
or the wording the way people do, which is what BLEU against several references rewards.

:func:`retrieval_texts` answers each MR with a reference of the most similar training MR, its
venue name and landmark replaced by the new ones: fluent text that may get some slots wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lorakit.data.lexicon import VALUES
from lorakit.data.records import E2ERecord, parse_mr

_PRICE = {
    "cheap": "low prices",
    "moderate": "moderate prices",
    "high": "high prices",
    "less than £20": "a price range of less than £20",
    "£20-25": "a price range of £20-25",
    "more than £30": "a price range of more than £30",
}
_RATING = {
    "low": "a low customer rating",
    "average": "an average customer rating",
    "high": "a high customer rating",
}
_AREA = {"city centre": "in the city centre", "riverside": "in the riverside area"}


def template_text(mr: str | dict[str, str]) -> str:
    """One fixed plan: "X is a pub serving F food in A near L. It has P and R. It is (not)
    family-friendly."

    >>> template_text("name[The Fig], eatType[pub], food[Italian], priceRange[cheap]")
    'The Fig is a pub serving Italian food. It has low prices.'
    """
    s = parse_mr(mr) if isinstance(mr, str) else mr
    noun = s.get("eatType", "place")
    text = f"{s['name']} is {'an' if noun[0] in 'aeiou' else 'a'} {noun}"
    if "food" in s:
        text += f" serving {'fast' if s['food'] == 'Fast food' else s['food']} food"
    text += f" {_AREA[s['area']]}" if "area" in s else ""
    text += f" near {s['near']}" if "near" in s else ""
    has = [_PRICE[s["priceRange"]]] if "priceRange" in s else []
    if "customer rating" in s:
        r = s["customer rating"]
        has.append(_RATING.get(r, f"a customer rating of {r}"))
    text += "." + (f" It has {' and '.join(has)}." if has else "")
    if "familyFriendly" in s:
        text += f" It is {'' if s['familyFriendly'] == 'yes' else 'not '}family-friendly."
    return text


def template_texts(mrs: Sequence[str]) -> list[str]:
    """:func:`template_text` of each MR."""
    return [template_text(mr) for mr in mrs]


_FEATURES = [(slot, v) for slot, values in VALUES.items() for v in values] + [("near", "")]


def _features(mrs: Sequence[str]) -> np.ndarray:
    """One row per MR, one 0/1 column per (slot, value) and one for "has a landmark"."""
    index = {f: i for i, f in enumerate(_FEATURES)}
    out = np.zeros((len(mrs), len(_FEATURES)), dtype=np.int32)
    for row, mr in enumerate(mrs):
        for slot, value in parse_mr(mr).items():
            key = (slot, "") if slot == "near" else (slot, value)
            if key in index:
                out[row, index[key]] = 1
    return out


def _central(refs: Sequence[str]) -> str:
    """The reference sharing the most word bigrams with its siblings (the most typical one)."""
    grams = [set(zip(r.split(), r.split()[1:])) for r in refs]
    scores = [sum(len(g & h) for j, h in enumerate(grams) if j != i) for i, g in enumerate(grams)]
    return refs[int(np.argmax(scores))]


def _swap(text: str, old: str, new: str) -> str:
    if not old:
        return text
    text = text.replace(old, new)
    return text.replace(old[:1].upper() + old[1:], new[:1].upper() + new[1:])


def retrieval_texts(mrs: Sequence[str], train: Sequence[E2ERecord]) -> list[str]:
    """For each MR, the most typical reference of the most similar training MR, names swapped.

    Similarity counts the (slot, value) pairs two MRs share minus those only one has (a landmark
    counts as one feature whatever it is); ties go to the earlier training record. The chosen
    reference is the one sharing most word bigrams with the other references of its MR, and its
    venue name and landmark are replaced by the MR's own.

    Parameters
    ----------
    mrs : the MRs to answer (N of them).
    train : the records to retrieve from (M of them).

    Returns
    -------
    list[str] : N texts.
    """
    if not train:
        raise ValueError("retrieval_texts needs training records to retrieve from.")
    a, b = _features(mrs), _features([r.mr for r in train])  # (N, F), (M, F)
    shared = a @ b.T  # (N, M)
    score = 2 * shared - a.sum(1, keepdims=True) - b.sum(1)[None, :]  # shared - symmetric diff
    best = score.argmax(1)
    chosen: dict[int, str] = {}
    out = []
    for mr, j in zip(mrs, best.tolist()):
        if j not in chosen:
            chosen[j] = _central(train[j].refs)
        src, dst = train[j].slots, parse_mr(mr)
        text = _swap(chosen[j], src["name"], dst["name"])
        out.append(_swap(text, src.get("near", ""), dst.get("near", src.get("near", ""))))
    return out
