"""The offline base's pretraining corpus: English prose already installed on the machine.

Python and its packages ship a great deal of English: the docstrings of the standard library and
of every installed package, and their ``.rst``/``.md``/``.txt`` documentation and package
descriptions. Where a machine has them, the manuals of its command-line tools add more: man pages
and info manuals (usually gzip-compressed) and the READMEs under ``/usr/share/doc``
(:mod:`lorakit.models.sysdocs`). :func:`gather_corpus` collects it all at run time, keeps only
prose-like paragraphs (:mod:`lorakit.models.prose`), and returns a :class:`Corpus` whose SHA-256
says exactly which text a base model saw. Nothing of it is copied into the repository; it is
cached under the lorakit cache (see :mod:`lorakit.models.cache`).

Determinism: files are visited in an order fixed by a hash of their key (a label and the path
relative to its root, e.g. ``man:man1/ls.1.gz``), so the same installation gives the same corpus,
and a size limit takes a spread-out sample rather than the alphabetically first packages.
Docstrings are read from the source text (no module is imported, so nothing runs); no program
is run to read a manual either.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.models import sysdocs
from lorakit.models.entities import entity_documents
from lorakit.models.prose import (  # noqa: F401  (is_prose: part of this module's API)
    is_prose,
    prose_paragraphs,
)

CORPUS_VERSION = 2  # 2: man pages, info manuals and /usr/share/doc
DOC_SUFFIXES = (".rst", ".md", ".txt")
SKIP_DIRS = {
    "__pycache__",
    "test",
    "tests",
    "testing",
    "idle_test",
    "node_modules",
    ".git",
    "site-packages",
    "dist-packages",
    "lorakit",
}
MAX_FILE_BYTES = 2_000_000
HELDOUT_EVERY = 20  # one document in 20 (by hash) is held out for perplexity
_REPO_ROOT = Path(__file__).resolve().parents[2]
_REPO_DIRS = tuple(_REPO_ROOT / d for d in ("lorakit", "chapters", "tests", "data"))

_TRIPLE = re.compile(r'^[ \t]*[rRuU]?("""|\'\'\')(.*?)\1', re.S | re.M)


@dataclass
class Corpus:
    """Documents of prose with a train / held-out split.

    Attributes
    ----------
    docs : the documents, each one source file's prose paragraphs joined by blank lines.
    sources : where each document came from, e.g. ``"stdlib:json/__init__.py"``.
    heldout : per document, True if it belongs to the held-out split (for perplexity).
    sha256 : hash of the texts, sources and split, so two equal hashes mean the same corpus.
    domain_text_used : whether unpaired domain text from :func:`lorakit.data.domain_text` is in.
        Generated entity prose (:mod:`lorakit.models.entities`), when asked for, is among the
        documents with sources ``"copy:entities/<i>"``; :meth:`chars_by_origin` counts it.
    """

    docs: list[str]
    sources: list[str]
    heldout: list[bool]
    domain_text_used: bool = False
    sha256: str = field(default="")

    def __post_init__(self) -> None:
        if not (len(self.docs) == len(self.sources) == len(self.heldout)):
            raise ValueError("Corpus.docs, sources and heldout must have the same length.")
        if not self.sha256:
            self.sha256 = corpus_hash(self.docs, self.sources, self.heldout)

    @property
    def chars(self) -> int:
        return sum(len(d) for d in self.docs)

    @property
    def train_texts(self) -> list[str]:
        return [d for d, h in zip(self.docs, self.heldout) if not h]

    @property
    def heldout_texts(self) -> list[str]:
        return [d for d, h in zip(self.docs, self.heldout) if h]

    def chars_by_origin(self) -> dict[str, int]:
        """Characters per origin (``stdlib``, ``site-packages``, ``man``, ``info``, ``doc``,
        ``domain``, ``copy``): the label before the colon of each source."""
        out: dict[str, int] = {}
        for doc, src in zip(self.docs, self.sources):
            origin = src.split(":", 1)[0]
            out[origin] = out.get(origin, 0) + len(doc)
        return out

    def summary(self) -> str:
        n_held = sum(self.heldout)
        return (
            f"{len(self.docs):,} documents, {self.chars / 1e6:.2f} M characters "
            f"({n_held} documents held out), sha256 {self.sha256[:16]}..."
            + (", with unpaired domain text" if self.domain_text_used else "")
        )


def corpus_hash(docs: list[str], sources: list[str], heldout: list[bool]) -> str:
    """SHA-256 over every document's source, split flag and text."""
    h = hashlib.sha256(f"lorakit-corpus-v{CORPUS_VERSION}".encode())
    for text, src, held in zip(docs, sources, heldout):
        h.update(f"\x00{src}\x00{int(held)}\x00".encode())
        h.update(text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def source_roots() -> list[tuple[str, Path]]:
    """The directories searched, labelled: the standard library, then each site-packages."""
    paths = sysconfig.get_paths()
    roots: list[tuple[str, Path]] = [("stdlib", Path(paths["stdlib"]))]
    for key in ("purelib", "platlib"):
        p = Path(paths[key])
        if p.is_dir() and all(p.resolve() != r.resolve() for _, r in roots):
            roots.append(("site-packages", p))
    return [(label, p) for label, p in roots if p.is_dir()]


_REPO_PREFIXES = tuple(str(d) + os.sep for d in _REPO_DIRS)


def _in_repo(path: Path) -> bool:
    return str(path).startswith(_REPO_PREFIXES)  # a string test: thousands of files per walk


def _descend(rel: str, name: str) -> bool:
    return name not in SKIP_DIRS


def _keep(rel: str, e: os.DirEntry) -> bool:
    name = e.name
    if not (name.endswith(".py") or name.endswith(DOC_SUFFIXES) or name == "METADATA"):
        return False
    return not _in_repo(Path(e.path))


def candidate_files(
    roots: list[tuple[str, Path]] | None = None,
    system: list[tuple[str, Path]] | None = None,
) -> list[tuple[str, Path, int]]:
    """All files that may hold prose, as ``(key, path, size)`` in the corpus's fixed order.

    Parameters
    ----------
    roots : labelled Python folders (default :func:`source_roots`): ``.py`` docstrings, docs.
    system : labelled manual folders (``"man"``, ``"info"``, ``"doc"``); default: the system's
        own (:func:`lorakit.models.sysdocs.system_roots`) when ``roots`` is not given, none when
        it is.

    ``key`` is ``label:relative/path``; the order is by a hash of the key, so it depends only on
    what is installed, not on the file system's listing order.
    """
    out = []
    if system is not None or roots is None:
        out += sysdocs.system_files(system)
    for label, root in source_roots() if roots is None else roots:
        files = sysdocs.walk_files(root, _descend, _keep, MAX_FILE_BYTES)
        out += [(f"{label}:{rel}", path, size) for rel, path, size in files]
    out.sort(key=lambda t: (hashlib.sha1(t[0].encode()).hexdigest(), t[0]))
    return out


def entities_file() -> Path:
    """The source of the entity-prose generator (part of the corpus fingerprint)."""
    return Path(__file__).with_name("entities.py")


def sources_fingerprint(files: list[tuple[str, Path, int]], extra: str = "") -> str:
    """A cheap hash of what the corpus will be made from: file keys and sizes, the Python version
    and this module's own source (so a changed gatherer never reuses a stale cached corpus)."""
    code = hashlib.sha256()  # a new gatherer (this module, filter, manual reader): new corpus
    here = Path(__file__)
    for module in (here, Path(sysdocs.__file__), here.with_name("prose.py"), entities_file()):
        code.update(module.read_bytes())
    tag = f"v{CORPUS_VERSION}|{code.hexdigest()}|{sys.version_info[:2]}|{extra}"
    h = hashlib.sha256(tag.encode())
    for key, _, size in files:
        h.update(f"{key}\x00{size}\n".encode())
    return h.hexdigest()


def _docstrings(source: str) -> Iterator[str]:
    """Triple-quoted strings that open a line: docstrings, in practice (code that happens to sit
    in such a string is dropped later by :func:`is_prose`). A regular expression is ~20x faster
    than :mod:`ast` here, which matters for gathering tens of MB on a small CPU."""
    for match in _TRIPLE.finditer(source):
        yield inspect.cleandoc(match.group(2))


def file_prose(path: Path, label: str = "") -> list[str]:
    """The prose paragraphs of one file: docstrings of a ``.py``, the text of a doc file, or
    of a manual when ``label`` is one of :data:`lorakit.models.sysdocs.LABELS`."""
    if label in sysdocs.LABELS:
        text = sysdocs.system_text(label, path)
        kept, total = [], 0
        for para in prose_paragraphs(text) if text else []:
            if total >= sysdocs.MAX_PROSE_CHARS:
                break
            kept.append(para)
            total += len(para)
        return kept
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    if path.as_posix().endswith(
        "pydoc_data/topics.py"
    ):  # the language reference, as pydoc shows it
        from pydoc_data.topics import topics

        return [p for key in sorted(topics) for p in prose_paragraphs(topics[key])]
    if path.suffix == ".py":
        return [p for doc in _docstrings(raw) for p in prose_paragraphs(doc)]
    if path.name == "METADATA":  # the package description follows the e-mail style header
        raw = raw.split("\n\n", 1)[1] if "\n\n" in raw else ""
    return prose_paragraphs(raw)


def _domain_documents(max_chars: int) -> list[str] | None:
    """Unpaired domain text (descriptions without their MRs, train split) grouped into documents,
    or ``None`` if :func:`lorakit.data.domain_text` is not available."""
    try:
        from lorakit.data import domain_text
    except ImportError:
        return None
    try:
        texts = domain_text("train")
    except Exception:  # noqa: BLE001 - a data module still in progress must not break the base
        return None
    texts = [texts] if isinstance(texts, str) else [str(t) for t in texts]
    docs, total = [], 0
    for i in range(0, len(texts), 20):
        doc = "\n".join(t.strip() for t in texts[i : i + 20] if t.strip())
        if not doc or total + len(doc) > max_chars:
            break
        docs.append(doc)
        total += len(doc)
    return docs


def gather_corpus(
    max_chars: int | None = 1_500_000,
    *,
    domain_fraction: float = 0.1,
    copy_fraction: float = 0.0,
    files: list[tuple[str, Path, int]] | None = None,
) -> Corpus:
    """Gather installed English prose into a :class:`Corpus`.

    Parameters
    ----------
    max_chars : stop once the prose reaches this many characters (``None``: take everything).
    domain_fraction : at most this fraction of ``max_chars`` (or of the prose) may be unpaired
        domain text from :func:`lorakit.data.domain_text` ``("train")``, when that exists.
    copy_fraction : add generated prose about invented entities, each named two or more times
        (:func:`lorakit.models.entities.entity_documents`), about this fraction of ``max_chars``
        (or of the prose); 0 adds none. It teaches copying a new name from context.
    files : the candidate files (default :func:`candidate_files`).

    Returns
    -------
    Corpus
        One document per source file with at least one prose paragraph; paragraphs seen before
        (licences, boilerplate) are dropped. One document in ``HELDOUT_EVERY`` is held out.
    """
    if not 0.0 <= copy_fraction < 1.0:
        raise ValueError(f"copy_fraction must lie in [0, 1) (got {copy_fraction}); 0.1 is typical.")
    if max_chars is not None and max_chars < 10_000:
        raise ValueError(f"max_chars={max_chars} is too small for a corpus; use >= 10_000.")
    files = candidate_files() if files is None else files
    seen: set[bytes] = set()
    docs, sources, total = [], [], 0
    for key, path, _ in files:
        paras = []
        for p in file_prose(path, key.split(":", 1)[0]):
            digest = hashlib.sha1(p.encode()).digest()
            if digest not in seen:
                seen.add(digest)
                paras.append(p)
        if not paras:
            continue
        doc = "\n\n".join(paras)
        docs.append(doc)
        sources.append(key)
        total += len(doc)
        if max_chars is not None and total >= max_chars:
            break
    if not docs:
        raise RuntimeError(
            "No English prose was found in the installed Python packages "
            f"(searched {[str(r) for _, r in source_roots()]}); the offline base "
            "needs it. Use load_base('gpt2') with network access instead."
        )
    heldout = [int(hashlib.sha1(s.encode()).hexdigest(), 16) % HELDOUT_EVERY == 0 for s in sources]
    if not any(heldout):
        heldout[-1] = True
    domain = _domain_documents(int(domain_fraction * (max_chars or total)))
    if domain:
        docs += domain
        sources += [f"domain:train/{i}" for i in range(len(domain))]
        heldout += [False] * len(domain)
    if copy_fraction > 0:  # training text only: held-out perplexity stays on installed prose
        generated = entity_documents(int(copy_fraction * (max_chars or total)))
        docs += generated
        sources += [f"copy:entities/{i}" for i in range(len(generated))]
        heldout += [False] * len(generated)
    return Corpus(docs, sources, heldout, domain_text_used=bool(domain))
