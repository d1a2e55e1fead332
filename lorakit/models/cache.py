"""The lorakit cache: where the offline base and its corpus are kept between runs.

Location: ``$LORAKIT_CACHE`` if set, else ``~/.cache/lorakit``. Every entry is a directory written
atomically (:func:`lorakit.fileio.atomic_folder`): it is built in a temporary sibling directory, a
``manifest.json`` holding the SHA-256 of every file is written last, and only then is the
directory renamed into place. An entry
whose manifest is missing, unreadable or disagrees with a file is treated as absent (and rebuilt
by the caller), so an interrupted build never leaves an entry that looks valid.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from lorakit.fileio import atomic_folder, file_sha256

MANIFEST = "manifest.json"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$LORAKIT_CACHE``, else ``~/.cache/lorakit``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("LORAKIT_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lorakit"


def verify_entry(entry: Path) -> str | None:
    """Check a cache entry against its manifest.

    Returns
    -------
    str or None
        ``None`` when the entry is complete and intact, else what is wrong with it.
    """
    if not entry.is_dir():
        return "absent"
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"its {MANIFEST} is missing or unreadable ({type(err).__name__})"
    if not isinstance(files, dict) or not files:
        return f"its {MANIFEST} lists no files"
    for rel, digest in files.items():
        path = entry / rel
        if not path.is_file():
            return f"{rel} is missing"
        try:
            if file_sha256(path) != digest:
                return f"{rel} does not match its recorded SHA-256"
        except OSError as err:
            return f"{rel} is unreadable ({err})"
    return None


def read_manifest(entry: Path) -> dict:
    """The ``meta`` block of an entry's manifest (call :func:`verify_entry` first)."""
    return json.loads((entry / MANIFEST).read_text()).get("meta", {})


def write_entry(entry: Path, fill: Callable[[Path], None], meta: dict | None = None) -> Path:
    """Build a cache entry atomically.

    Parameters
    ----------
    entry : the final directory.
    fill : writes the entry's files into the temporary directory it is given.
    meta : JSON-able facts stored in the manifest beside the file hashes.

    Returns
    -------
    Path
        ``entry``, now complete. On any error the temporary directory is removed and an existing
        ``entry`` is left as it was.
    """

    def build(tmp: Path) -> None:
        fill(tmp)
        files = {
            p.relative_to(tmp).as_posix(): file_sha256(p)
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        (tmp / MANIFEST).write_text(json.dumps({"files": files, "meta": meta or {}}, indent=1))

    return atomic_folder(entry, build)
