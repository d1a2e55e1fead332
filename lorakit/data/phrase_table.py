"""A small format for weighted phrase tables, one weight per writer style.

A table is written one phrase a line, ``role: text | weights``, where ``weights`` reads
``3 g6 c0``: weight 3 for every style, except 6 for the guide-book writer (``g``) and 0 for the
chatty one (``c``). The styles are :data:`STYLE_KEYS`: ``p`` plain, ``g`` guide-book, ``c`` chatty
reviewer, ``a`` advertising, ``t`` terse.
"""

from __future__ import annotations

STYLE_KEYS = "pgcat"
Weights = tuple[int, ...]  # one weight per style of STYLE_KEYS
Entry = tuple[str, Weights]
ROLES = ("pre", "post", "adj", "vp", "np", "clause", "front")


def weights(spec: str) -> Weights:
    """``"3 g6 c0"`` -> weights in :data:`STYLE_KEYS` order, here ``(3, 6, 0, 3, 3)``."""
    default, *overrides = spec.split() or ["1"]
    out = dict.fromkeys(STYLE_KEYS, int(default))
    for item in overrides:
        out[item[0]] = int(item[1:])
    return tuple(out[k] for k in STYLE_KEYS)


def parse_table(spec: str) -> dict[str, list[Entry]]:
    """Parse ``role: text | weights`` lines."""
    table: dict[str, list[Entry]] = {role: [] for role in ROLES}
    for line in spec.strip().splitlines():
        if not line.strip():
            continue
        role, _, rest = line.partition(":")
        text, _, w = rest.partition("|")
        table[role.strip()].append((text.strip(), weights(w)))
    return table


def fill(table: dict[str, list[Entry]], key: str, options: list[Entry]) -> dict[str, list[Entry]]:
    """Replace ``key`` in every phrase by each option; the weights multiply."""
    return {
        role: [
            (t.replace(key, o), tuple(a * b for a, b in zip(w, ow)))
            for t, w in entries
            for o, ow in (options if key in t else [("", (1,) * 5)])
        ]
        for role, entries in table.items()
    }
