"""Which paragraphs of a text are English prose: the corpus's filter.

Documentation mixes prose with code, doctests, tables, lists, signatures and headings. The base
model should learn from sentences, so :func:`prose_paragraphs` splits a text at blank lines,
strips reStructuredText and Markdown markup (roles, literals, links) and keeps a paragraph only
when :func:`is_prose` says it reads as English sentences.
"""

from __future__ import annotations

import inspect
import re

_ROLE = re.compile(r":[\w:+-]+:`([^`<]*?)(?:\s*<[^`]*>)?`")  # :func:`name` -> name
_LITERAL = re.compile(r"``([^`]+)``|`([^`]+)`_{0,2}")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_CODE_CHARS = set("{}[]()<>=_*\\/|#@$%^&~`;")
# fmt: off
_BAD_START = (  # doctest, directives, field lists, tables, comments, lists, legal lines, URLs
    ">>>", "...", "$ ", ".. ", ":param", ":return", ":type", ":raises", "@", "|", "+-", "#", "{",
    "}", "- ", "* ", "Copyright", "SPDX", "http",
)
# fmt: on


def _plain(text: str) -> str:
    text = _ROLE.sub(r"\1", text)
    text = _LITERAL.sub(lambda m: m.group(1) or m.group(2), text)
    return _MD_LINK.sub(r"\1", text)


def is_prose(paragraph: str) -> bool:
    """Whether a paragraph (lines as in the source) reads as English prose rather than code,
    tables, lists, signatures or headings."""
    lines = [ln.rstrip() for ln in paragraph.splitlines() if ln.strip()]
    if not lines or any(ln.startswith((" ", "\t")) for ln in lines):
        return False  # indented blocks in docs are code or quotes
    for ln in lines:
        s = ln.strip()
        if s.startswith(_BAD_START) or (len(set(s)) <= 2 and not s[0].isalnum()):
            return False  # doctest, directive, table, list, heading underline
    text = " ".join(ln.strip() for ln in lines)
    words = text.split()
    if len(text) < 80 or len(words) < 12 or not text[0].isupper() or text[-1] not in ".!?":
        return False
    if sum(c in _CODE_CHARS for c in text) > 0.02 * len(text):
        return False
    letters = sum(c.isalpha() or c == " " for c in text)
    plain_words = sum(w.strip(".,;:!?\"'").isalpha() and w.islower() for w in words)
    return letters >= 0.9 * len(text) and plain_words >= 0.6 * len(words)


def _unindent(paragraph: str) -> str:
    """An indented description under an unindented ``name : type`` line (NumPy/Google style
    parameter lists) or a uniformly indented block: the description, dedented. Anything else is
    returned as it is (and :func:`is_prose` rejects indented lines)."""
    lines = [ln for ln in paragraph.splitlines() if ln.strip()]
    if len(lines) >= 2 and not lines[0][0].isspace() and all(ln[0].isspace() for ln in lines[1:]):
        lines = lines[1:]
    if lines and all(ln[0].isspace() for ln in lines):
        return inspect.cleandoc("\n".join(lines))
    return paragraph


def prose_paragraphs(text: str) -> list[str]:
    """Split text into blank-line-separated paragraphs and keep the prose ones, each reflowed
    onto one line."""
    out = []
    for para in re.split(r"\n\s*\n", _plain(text)):
        para = _unindent(para)
        if is_prose(para):
            out.append(" ".join(para.split()))
    return out
