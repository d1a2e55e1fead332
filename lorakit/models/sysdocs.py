"""System documentation as corpus text: man pages, info manuals and ``/usr/share/doc``.

Many machines carry, besides Python's own documentation, the manuals of their command-line tools:
``/usr/share/man/man*/`` (troff source, usually gzip-compressed), ``/usr/share/info`` (GNU
manuals, plain text split into nodes) and ``/usr/share/doc/<package>/`` (READMEs, FAQs, NEWS).
This module finds them and turns each into plain text; :mod:`lorakit.models.corpus` then keeps the
prose paragraphs, exactly as it does for docstrings. Machines without them (slim containers, most
notebooks in the cloud) simply contribute nothing from here.

* Only English manuals: the top-level ``man<section>`` folders; translations live in
  ``/usr/share/man/<locale>/`` and are skipped.
* Size caps: a file larger than :data:`MAX_FILE_BYTES` on disk is skipped, at most
  :data:`MAX_TEXT_BYTES` of a file is decompressed and read, and at most :data:`MAX_PROSE_CHARS`
  of its prose is kept (a long manual does not crowd out a hundred short ones).
* No program is run (no ``man``, ``groff`` or ``info``): the troff and info markup is stripped
  here, with regular expressions, so the text is the same on every machine with the same files.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

SYSTEM_ROOTS = (("man", "/usr/share/man"), ("info", "/usr/share/info"), ("doc", "/usr/share/doc"))
LABELS = tuple(label for label, _ in SYSTEM_ROOTS)
MAX_FILE_BYTES = 1_000_000  # on disk (compressed)
MAX_TEXT_BYTES = 4_000_000  # read after decompression
MAX_PROSE_CHARS = 60_000  # prose kept per file
_DOC_SUFFIXES = (".txt", ".md", ".rst")
_DOC_STEMS = ("README", "FAQ", "NEWS", "INTRO", "OVERVIEW", "USAGE")
_MAN_SECTION = re.compile(r"^man[0-9n][\w]*$")
_INFO_NAME = re.compile(r"\.info(-\d+)?(\.gz)?$")

# fmt: off
# troff: fonts \fB \f(CW \f[B]; named characters \(em \[em]; strings \*x \*(xx \*[name];
# sizes \s-1 \s+2 \s0; then whatever single-character escape is left
_TROFF_CHARS = {"em": " - ", "en": "-", "hy": "-", "aq": "'", "dq": '"', "lq": '"', "rq": '"',
                "oq": "'", "cq": "'", "bu": "", "co": "(c)", "mu": "x", "ti": "~", "ha": "^",
                "rs": "\\", "at": "@", "sl": "/", "pl": "+", "eq": "=", "fm": "'"}
_FONT = re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)")
_NAMED = re.compile(r"\\(?:\((..)|\[([^\]]*)\])")
_STRING = re.compile(r"\\\*(?:\[[^\]]*\]|\(..|.)")
_SIZE = re.compile(r"\\s[+-]?\d+")
_ESCAPE = re.compile(r"\\(.)")
_SIMPLE = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "&": "", "|": "",
           "^": "", "c": "", "%": "", ",": "", "/": "", ":": "", "'": "'", "`": "`", '"': ""}
# macros whose arguments are running text (man(7) fonts, mdoc(7) inline macros)
_TEXT_MACROS = {"B", "I", "SM", "SB", "Nm", "Ar", "Fl", "Cm", "Pa", "Em", "Sy", "Li", "Va", "Ev",
                "Dq", "Sq", "Ql", "Xr", "Tn", "Ic", "Dv", "Er", "Fa", "Fn", "Ft", "Ux", "An"}
_ALTERNATING = {"BR", "RB", "BI", "IB", "IR", "RI"}
_BREAK_MACROS = {"PP", "P", "LP", "SH", "SS", "TP", "IP", "HP", "TH", "RS", "RE", "sp", "br",
                 "Pp", "Sh", "Ss", "It", "Bl", "El", "Dd", "Dt", "Os", "Bd", "Ed", "in", "ti"}
_SKIP_BLOCKS = {"nf": "fi", "EX": "EE", "TS": "TE", "EQ": "EN", "de": "..", "ig": ".."}
_HEADING_MACROS = {"SH", "SS", "Sh", "Ss", "TH", "Dt"}
# fmt: on
_ARGS = re.compile(r'"([^"]*)"|(\S+)')


def system_roots() -> list[tuple[str, Path]]:
    """The system documentation folders that exist on this machine, labelled."""
    return [(label, Path(p)) for label, p in SYSTEM_ROOTS if Path(p).is_dir()]


def _wanted(label: str, rel: str, name: str) -> bool:
    if label == "man":
        top = rel.split("/", 1)[0]
        return "/" in rel and bool(_MAN_SECTION.match(top))
    if label == "info":
        return bool(_INFO_NAME.search(name))
    base = name[:-3] if name.endswith(".gz") else name
    lower = base.lower()
    if lower.startswith(("changelog", "copyright", "license", "licence")):
        return False
    return lower.endswith(_DOC_SUFFIXES) or base.split(".")[0].upper() in _DOC_STEMS


def walk_files(
    root: Path,
    descend: Callable[[str, str], bool],
    keep: Callable[[str, os.DirEntry], bool],
    max_bytes: int,
) -> Iterator[tuple[str, Path, int]]:
    """The files under ``root`` as ``(rel, path, size)``; ``rel`` is the ``/``-separated path
    relative to ``root``.

    Folders whose name starts with ``.`` are never entered; any other folder is entered when
    ``descend(rel, name)`` says so. A file (or a link, which is not followed) is yielded when
    ``keep(rel, entry)`` says so and its size on disk is in ``(0, max_bytes]``. Folders and files
    that cannot be read are skipped. The order is the walk's (depth first, by listing order).
    """
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for e in entries:
            rel = prefix + e.name
            if e.is_dir(follow_symlinks=False):
                if not e.name.startswith(".") and descend(rel, e.name):
                    stack.append((Path(e.path), rel + "/"))
                continue
            if not keep(rel, e):
                continue
            try:
                size = e.stat(follow_symlinks=False).st_size
            except OSError:
                continue
            if 0 < size <= max_bytes:
                yield rel, Path(e.path), size


def system_files(roots: list[tuple[str, Path]] | None = None) -> list[tuple[str, Path, int]]:
    """Manual and documentation files as ``(key, path, size)``, ``key`` = ``label:relative/path``.

    Symbolic links (``man`` aliases) and files over :data:`MAX_FILE_BYTES` are left out; the
    caller fixes the order (:func:`lorakit.models.corpus.candidate_files` sorts by key hash).
    """
    out = []
    for label, root in system_roots() if roots is None else roots:

        def descend(rel: str, name: str, label: str = label) -> bool:
            # English manuals only: man/<section>/..., not man/<locale>/...
            return label != "man" or "/" in rel or bool(_MAN_SECTION.match(name))

        def keep(rel: str, e: os.DirEntry, label: str = label) -> bool:
            return e.is_file(follow_symlinks=False) and _wanted(label, rel, e.name)

        files = walk_files(root, descend, keep, MAX_FILE_BYTES)
        out += [(f"{label}:{rel}", path, size) for rel, path, size in files]
    return out


def read_text(path: Path) -> str | None:
    """A file's text (gunzipped when it ends in ``.gz``), at most :data:`MAX_TEXT_BYTES` of it;
    ``None`` when it cannot be read or is not UTF-8."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read(MAX_TEXT_BYTES)
        else:
            with open(path, "rb") as f:
                raw = f.read(MAX_TEXT_BYTES)
        return raw.decode("utf-8")
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError):
        return None


def _troff_inline(text: str) -> str:
    text = _FONT.sub("", text)
    text = _NAMED.sub(lambda m: _TROFF_CHARS.get(m.group(1) or m.group(2) or "", ""), text)
    text = _SIZE.sub("", _STRING.sub("", text))
    return _ESCAPE.sub(lambda m: _SIMPLE.get(m.group(1), ""), text)


def man_to_text(source: str) -> str:
    """Plain text of a man page's troff source (man(7) or mdoc(7) macros).

    Paragraph macros (``.PP``, ``.SH``, ``.TP``, ``.Pp`` ...) become blank lines; headings, the
    tag line after ``.TP``, no-fill blocks (``.nf``/``.fi``, ``.EX``/``.EE``), tables and
    comments are dropped; font macros keep their words; escapes become the characters they
    name. The result is for :func:`lorakit.models.prose.prose_paragraphs`, which keeps only prose.
    """
    out: list[str] = []
    skip_until, skip_next = None, False
    for line in source.splitlines():
        if skip_until is not None:
            if line.startswith(("." + skip_until, "'" + skip_until)) or line.strip() == skip_until:
                skip_until = None
            continue
        if line.startswith(('.\\"', "'\\\"", '\\"')):
            continue
        if line[:1] in (".", "'"):
            request = line[1:].strip()
            name, _, rest = request.partition(" ")
            if name in _SKIP_BLOCKS:
                skip_until = _SKIP_BLOCKS[name]
            elif name in _BREAK_MACROS:
                out.append("")
                skip_next = name == "TP"  # the next line is the tag (an option's name)
            elif name in _TEXT_MACROS or name in _ALTERNATING:
                words = [a or b for a, b in _ARGS.findall(rest)]
                joiner = "" if name in _ALTERNATING else " "
                out.append(_troff_inline(joiner.join(words)))
            continue
        if skip_next:
            skip_next = False
            continue
        out.append(_troff_inline(line) if line.strip() else "")
    return "\n".join(out)


_INFO_HEADER = re.compile(r"^File: .*Node: .*$", re.M)
_INFO_NOTE = re.compile(r"\*[Nn]ote\s+([^:]+?)::|\*[Nn]ote\s+([^:]+?):\s*[^.,]*[.,]")


def info_to_text(source: str) -> str:
    """Plain text of an info manual: node headers, menus and index tables dropped, cross
    references (``*note Name::``) reduced to their names, and the three-space indent that
    opens each paragraph removed (indented examples stay indented, so they are not prose)."""
    text = source.replace("\x1f", "\n")
    text = _INFO_HEADER.sub("", text.split("\nTag Table:\n", 1)[0])
    text = _INFO_NOTE.sub(lambda m: (m.group(1) or m.group(2) or "").strip(), text)
    lines = []
    for line in text.splitlines():
        if line.startswith("   ") and not line.startswith("    ") and line[3:4].strip():
            line = line[3:]
        lines.append(line)
    return "\n".join(lines)


def system_text(label: str, path: Path) -> str | None:
    """The plain text of one system file with label ``man``, ``info`` or ``doc``."""
    text = read_text(path)
    if text is None:
        return None
    if label == "man":
        return man_to_text(text)
    if label == "info":
        return info_to_text(text)
    return text
