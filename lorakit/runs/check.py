"""``python -m lorakit.runs check [DIR] [--strict]``: which records no longer match the code or
data.

A record is *stale* when it lacks ``source_sha256`` or ``data`` (written before records carried
them), when a ``lorakit/`` module its run loaded has changed here (older records without
``source_files``: when any module of the package has), or when a data file it read now has
another SHA-256. A data file that is not on this machine (the real E2E data when it
is not in the cache, another user's folder) cannot be checked: the record is listed as
*unverified*, not stale. The command is a report and exits 0; ``--strict`` exits 1 when a
record is stale.

``python -m lorakit.runs claims [DIR] [--markdown]`` is the other command: see
:mod:`lorakit.runs.claims`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.runs import PACKAGE_DIR, RUNS_DIR, code_sha256, source_changes, source_sha256


@dataclass
class Finding:
    """What :func:`check_record` found about one record file."""

    path: Path
    stale: list[str] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)


class CodeHashes:
    """The code hash of each ``.py`` file of a package tree, computed once per version of the file.

    Hashing a module parses it and walks its syntax tree; a record names ~90 modules, and the
    claims table checks a record once for every claim that reads it, so checking without this
    memo re-parsed the whole package some 800 times (13 minutes for the shipped records). A
    file's hash is kept under its size and modification time: an edit in the same process is
    seen. :meth:`changes` answers as :func:`lorakit.runs.source_changes` does.
    """

    def __init__(self, package_dir: str | Path = PACKAGE_DIR) -> None:
        self.root = Path(package_dir)
        self._memo: dict[str, tuple[tuple[int, int], str | None]] = {}

    def file(self, rel: str) -> str | None:
        """The :func:`~lorakit.runs.code_sha256` of ``rel`` (``None`` when it does not exist)."""
        path = self.root / rel
        try:
            stat = path.stat()
        except OSError:
            return None
        version = (stat.st_mtime_ns, stat.st_size)
        kept = self._memo.get(rel)
        if kept is None or kept[0] != version:
            digest = code_sha256(path.read_bytes()) if path.is_file() else None
            kept = self._memo[rel] = (version, digest)
        return kept[1]

    def sha256(self, files) -> str:
        """:func:`lorakit.runs.source_sha256` of these files, from the memo."""
        h = hashlib.sha256()
        for rel in sorted(set(files)):
            digest = self.file(rel)
            h.update(rel.encode() + b"\0" + (bytes.fromhex(digest) if digest else b"missing"))
        return h.hexdigest()

    def changes(self, record: dict, whole: str | None = None) -> list[str]:
        """:func:`lorakit.runs.source_changes` of ``record``: ``[]`` when the code here made it.

        Only a record whose modules all hash as recorded is answered from the memo; any other
        goes to :func:`~lorakit.runs.source_changes`, which words the reason.
        """
        files = record.get("source_files")
        if (
            isinstance(files, dict)
            and files
            and all(self.file(rel) == sha for rel, sha in files.items())
            and record.get("source_sha256") == self.sha256(files)
        ):
            return []
        return source_changes(record, self.root, whole)


def record_files(runs_dir: str | Path = RUNS_DIR) -> list[Path]:
    """The ``*.json`` files in ``runs_dir`` and its subfolders (``bench/``, one folder per grid
    of runs), sorted by path."""
    return sorted(Path(runs_dir).rglob("*.json"))


def _data_findings(data: dict, found: Finding, cache_dir=None) -> None:
    from lorakit.data.sources import locate
    from lorakit.fileio import file_sha256

    files = data.get("files")
    if not isinstance(files, dict) or not files:
        found.stale.append("its data block lists no file hashes")
        return
    folder = locate(data, cache_dir)
    for name, digest in sorted(files.items()):
        path = None if folder is None else folder / name
        if path is None or not path.is_file():
            found.unverified.append(
                f"data file {name} ({data.get('source')}) is not on this machine"
            )
        elif file_sha256(path) != digest:
            found.stale.append(f"data file {name} ({data.get('source')}) changed")


def check_record(
    path: str | Path,
    current_source: str | None = None,
    cache_dir=None,
    hashes: CodeHashes | None = None,
) -> Finding | None:
    """Compare one record with the tree and data here; ``None`` if the file is not a record.

    ``current_source``: the whole package's :func:`~lorakit.runs.source_sha256`, for records
    written before they named their modules (computed when not given). ``hashes``: the code
    hashes to check against (default: this process's memo of the installed package)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return Finding(path, stale=[f"unreadable ({type(err).__name__}: {err})"])
    if not isinstance(record, dict) or "results" not in record:
        return None
    found = Finding(path)
    hashes = hashes if hashes is not None else _installed()
    found.stale.extend(hashes.changes(record, whole=current_source))
    if "data" not in record:
        found.stale.append("no data hashes (written before records carried them)")
    elif record["data"] is not None:
        _data_findings(record["data"], found, cache_dir)
    return found


_INSTALLED: CodeHashes | None = None


def _installed() -> CodeHashes:
    """One :class:`CodeHashes` of the installed package for the whole process."""
    global _INSTALLED
    if _INSTALLED is None:
        _INSTALLED = CodeHashes()
    return _INSTALLED


def check_runs(runs_dir: str | Path = RUNS_DIR, cache_dir=None) -> list[Finding]:
    """One :class:`Finding` per record in ``runs_dir`` and its subfolders."""
    current = source_sha256()
    findings = (check_record(p, current, cache_dir) for p in record_files(runs_dir))
    return [f for f in findings if f is not None]


def _shown(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lorakit.runs", description="Tools for the recorded runs in data/runs."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser(
        "check",
        help="list records whose code or data changed since",
        description=__doc__.split("\n\n")[1],
    )
    check.add_argument(
        "dir",
        nargs="?",
        default=str(RUNS_DIR),
        help="the records' folder (default data/runs; its subfolders included)",
    )
    check.add_argument("--strict", action="store_true", help="exit 1 when a record is stale")
    from lorakit.runs import claims

    claims.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "claims":
        return claims.run(args)
    findings = check_runs(args.dir)
    stale = [f for f in findings if f.stale]
    for f in findings:
        if f.stale:
            print(f"stale       {_shown(f.path)}: {'; '.join(f.stale + f.unverified)}")
        elif f.unverified:
            print(f"unverified  {_shown(f.path)}: {'; '.join(f.unverified)}")
    print(
        f"{len(stale)} of {len(findings)} records stale, "
        f"{sum(1 for f in findings if f.unverified and not f.stale)} unverified "
        f"(lorakit/ source {source_sha256()[:12]})."
    )
    return 1 if args.strict and stale else 0
