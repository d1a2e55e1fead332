"""Recorded runs: full-size results made on a GPU, kept as JSON in ``data/runs/``.

A record carries its provenance: the preset and config, seed, device name, library versions,
date and wall time, so that a notebook can show it beside its own live run and say plainly which
is which. Three fields say which code and data made it, all computed when the record is written:

* ``source_sha256``: :func:`source_sha256`, a hash of the ``lorakit/`` package's ``.py`` files
  (their relative paths and contents, in sorted order; no git needed, so a copy of the tree
  without ``.git`` gives the same hash);
* ``data``: the data source the run read and the SHA-256 of each of its files
  (:meth:`lorakit.data.sources.DataSource.provenance`), or ``null`` for a run that reads no data
  file (a benchmark on random tokens);
* ``commit``: the git commit (``+dirty`` when tracked files differ from it), else
  ``$LORAKIT_COMMIT``, else ``"unknown"``.

``python -m lorakit.runs check`` lists the records whose code or data changed since.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

PACKAGE_DIR = Path(__file__).resolve().parents[1]
RUNS_DIR = PACKAGE_DIR.parent / "data" / "runs"


def source_sha256(package_dir: str | Path = PACKAGE_DIR) -> str:
    """SHA-256 over the package's ``.py`` files: each one's relative path and content, sorted.

    File times, permissions, caches and git do not enter, so any copy of the same tree has the
    same hash, and any edit, added, removed or renamed module changes it.
    """
    root = Path(package_dir)
    files = sorted(
        (p.relative_to(root).as_posix(), p)
        for p in root.rglob("*.py")
        if not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    h = hashlib.sha256()
    for rel, path in files:
        h.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("transformers", "tokenizers", "numpy", "sacrebleu", "peft", "triton"):
        try:
            module = __import__(name)
            out[name] = getattr(module, "__version__", "?")
        except ImportError:
            pass
    return out


def _commit() -> str:
    """The git commit of the code that ran (``$LORAKIT_COMMIT`` where the tree has no git)."""
    if os.environ.get("LORAKIT_COMMIT"):
        return os.environ["LORAKIT_COMMIT"]
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        sha = proc.stdout.strip() if proc.returncode == 0 else ""
        if not sha:
            return "unknown (not a git checkout; set LORAKIT_COMMIT)"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
        return (sha or "unknown") + ("+dirty" if sha and dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name() -> str:
    """A human name for the compute device (GPU model, or the CPU's architecture)."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.machine()})"


def data_provenance(data: Any) -> dict | None:
    """A record's ``data`` field from a DataSource (anything with ``provenance()``), a dict or None."""
    if data is None or isinstance(data, dict):
        return data
    if hasattr(data, "provenance"):
        return data.provenance()
    raise TypeError(f"data must be a DataSource, a dict or None, got {type(data).__name__}.")


def provenance(
    preset: str, seed: int | None, config: dict[str, Any], wall_s: float, data: Any = None
) -> dict:
    """The provenance block every record carries (``data``: see :func:`data_provenance`)."""
    return {
        "preset": preset,
        "seed": seed,
        "config": config,
        "device": device_name(),
        "versions": _versions(),
        "commit": _commit(),
        "source_sha256": source_sha256(),
        "data": data_provenance(data),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(float(wall_s), 2),
    }


def save_record(
    name: str,
    results: dict[str, Any],
    *,
    preset: str,
    config: dict[str, Any],
    wall_s: float,
    seed: int | None = None,
    out_dir: str | Path | None = None,
    data: Any = None,
) -> Path:
    """Write ``{name}.json`` = results + provenance into ``out_dir`` (default ``data/runs``).

    ``data``: the :class:`lorakit.data.sources.DataSource` the run read (its file hashes are
    computed now), or ``None`` when the run reads no data file.
    """
    out_dir = Path(out_dir) if out_dir is not None else RUNS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"name": name, "results": results, **provenance(preset, seed, config, wall_s, data)}
    from lorakit.fileio import atomic_write

    text = json.dumps(record, indent=2, default=_jsonable) + "\n"
    return atomic_write(out_dir / f"{name}.json", lambda tmp: Path(tmp).write_text(text))


def load_record(name: str, runs_dir: str | Path | None = None) -> dict[str, Any] | None:
    """Load ``data/runs/{name}.json``; ``None`` (not an error) if it has not been recorded yet."""
    path = (Path(runs_dir) if runs_dir is not None else RUNS_DIR) / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
