"""The record format of the E2E-style data-to-text task (Novikova et al. 2017; LoRA paper §5.4).

A record is one meaning representation (MR) and the human-style texts ("references") that
verbalise it. The MR is kept as E2E writes it::

    name[The Copper Kettle], eatType[pub], food[Italian], area[riverside], near[Crown Bridge]

Slots come from a closed set (:data:`SLOTS`, in E2E's canonical order); ``name`` is always there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SLOTS: tuple[str, ...] = (
    "name",
    "eatType",
    "food",
    "priceRange",
    "customer rating",
    "area",
    "familyFriendly",
    "near",
)

_SLOT_RE = re.compile(r"\s*([^\[\],]+?)\s*\[([^\[\]]*)\]\s*(?:,|$)")


@dataclass(frozen=True)
class E2ERecord:
    """One meaning representation and its references.

    Attributes
    ----------
    mr : the MR in E2E's text form, ``"name[X], eatType[pub], ..."``.
    refs : the reference texts (E2E has about 8 per MR; the synthetic set 7-10, 8.5 on average).
    """

    mr: str
    refs: tuple[str, ...]

    def __post_init__(self) -> None:
        if isinstance(self.refs, str):
            raise TypeError(
                f"refs must be a list of texts, not one string ({self.refs[:40]!r}...); "
                "write E2ERecord(mr, (text,)) for a single reference."
            )
        if not isinstance(self.refs, tuple):
            object.__setattr__(self, "refs", tuple(self.refs))

    @property
    def slots(self) -> dict[str, str]:
        """The MR as an ordered ``{slot: value}`` dict."""
        return parse_mr(self.mr)

    def to_json(self) -> dict:
        return {"mr": self.mr, "refs": list(self.refs)}


def parse_mr(mr: str) -> dict[str, str]:
    """Parse ``"name[X], food[Y]"`` into ``{"name": "X", "food": "Y"}`` (order kept).

    Raises
    ------
    ValueError
        If the text is not a comma-separated list of ``slot[value]`` items, or a slot repeats.
    """
    if not isinstance(mr, str) or not mr.strip():
        raise ValueError(f"Empty meaning representation {mr!r}; expected 'name[...], slot[...]'.")
    out: dict[str, str] = {}
    pos = 0
    text = mr.strip()
    while pos < len(text):
        match = _SLOT_RE.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(
                f"Cannot parse the meaning representation {mr!r} at character {pos}: "
                "expected items like 'slot[value]' separated by commas."
            )
        slot, value = match.group(1).strip(), match.group(2).strip()
        if slot in out:
            raise ValueError(f"Slot {slot!r} appears twice in the meaning representation {mr!r}.")
        out[slot] = value
        pos = match.end()
    return out


def format_mr(slots: dict[str, str]) -> str:
    """Write ``{slot: value}`` in E2E's form, known slots in E2E's canonical order first."""
    order = [s for s in SLOTS if s in slots] + [s for s in slots if s not in SLOTS]
    return ", ".join(f"{s}[{slots[s]}]" for s in order)
