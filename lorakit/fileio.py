"""Writing files and folders so that a crash never leaves a half-written one.

One scheme serves every on-disk format of lorakit (adapters, trainable-parameter files, run
records, cache entries): write under a hidden temporary name beside the target, flush it to the
disk, then rename it into place. A rename within a folder is atomic, so a reader sees the old
file or the new one, never a mix; a crash leaves at most a hidden ``.NAME.*.tmp`` file or folder.

* :func:`atomic_write` -- one file;
* :func:`stage` and :func:`commit` -- the two halves of :func:`atomic_write`, for formats that
  must write several files and commit them in a chosen order (an adapter's weights and config);
* :func:`atomic_folder` -- a whole folder (a cache entry), built aside and renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

PathLike = str | os.PathLike


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not every platform opens folders
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stage(path: PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` on a hidden temporary file beside ``path`` and flush it to disk.

    The file is named ``.NAME.<random>.tmp`` (``NAME`` = ``path``'s name), so that a reader of
    the folder can find and clean up what an interrupted save left. Returns the temporary path;
    :func:`commit` renames it into place. On an error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def commit(tmp: PathLike, path: PathLike) -> Path:
    """Rename a file written by :func:`stage` to ``path`` (atomically) and make it durable."""
    path = Path(path)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def atomic_write(path: PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    A crash or an error mid-write leaves any earlier file at ``path`` as it was, never a
    half-written one. Returns ``path``.

    Examples
    --------
    >>> atomic_write("out/record.json", lambda tmp: Path(tmp).write_text("{}"))  # doctest: +SKIP
    """
    tmp = stage(path, write)
    try:
        return commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_folder(path: PathLike, fill: Callable[[Path], object]) -> Path:
    """Build a folder with ``fill(tmp_folder)`` beside ``path``, then rename it into place.

    An existing folder at ``path`` is replaced only once the new one is complete. On any error
    the temporary folder is removed and an existing ``path`` is left as it was. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = path.with_name(f".{path.name}.tmp-{tag}")
    try:
        tmp.mkdir()
        fill(tmp)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{tag}")
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def file_sha256(path: PathLike) -> str:
    """The SHA-256 of a file's bytes, read in chunks (hex digest)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()
