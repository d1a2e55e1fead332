"""Recorded runs: full-size results made on a GPU, kept as JSON in ``data/runs/``.

A record carries its provenance: the preset and config, seed, device name, library versions,
date and wall time, so that a notebook can show it beside its own live run and say plainly which
is which. Three fields say which code and data made it, all computed when the record is written:

* ``source_files`` and ``source_sha256``: the ``lorakit/`` modules the run's process had loaded
  when it wrote the record (:func:`loaded_sources`: each one's path in the package and the
  SHA-256 of its code, :func:`code_sha256`: comments, formatting and docstrings do not count)
  and one hash over them (:func:`source_sha256`). No git is needed, so a
  copy of the tree without ``.git`` gives the same hashes, and an edit of a module the run never
  loaded (a benchmark, a chapter's checker) leaves the record current
  (:func:`source_changes`);
* ``data``: the data source the run read and the SHA-256 of each of its files
  (:meth:`lorakit.data.sources.DataSource.provenance`), or ``null`` for a run that reads no data
  file (a benchmark on random tokens);
* ``commit``: the git commit (``+dirty`` when tracked files differ from it), else
  ``$LORAKIT_COMMIT``, else ``"unknown"``.

``python -m lorakit.runs check`` lists the records whose code or data changed since.
"""

from __future__ import annotations

import ast
import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

PACKAGE_DIR = Path(__file__).resolve().parents[1]
RUNS_DIR = PACKAGE_DIR.parent / "data" / "runs"


def _package_files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.py")
        if not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


_DOC_OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def code_sha256(source: str | bytes) -> str:
    """SHA-256 of what a module's code *does*: its syntax tree without docstrings.

    Comments, formatting, line wrapping (adjacent string literals are one constant to the
    parser) and docstrings do not enter; any change to a statement, a name or a value does.
    The tree is written out field by field, leaving out empty fields and empty f-string
    parts, so the parsers of Python 3.10 to 3.13 agree (3.12 adds empty ``type_params`` and
    empty constants in nested format specs). A file that does not parse
    is hashed as bytes.
    """
    raw = source.encode() if isinstance(source, str) else source
    try:
        tree = ast.parse(raw)
    except (SyntaxError, ValueError):
        return hashlib.sha256(raw).hexdigest()
    return tree_sha256(tree)


def tree_sha256(tree: ast.AST) -> str:
    """SHA-256 of a syntax tree as :func:`code_sha256` writes it out."""
    h = hashlib.sha256()

    def write(node) -> None:
        if isinstance(node, ast.JoinedStr):  # f-strings: see _fstring_parts
            node = ast.JoinedStr(values=_fstring_parts(node))
        if isinstance(node, ast.FormattedValue) and isinstance(node.format_spec, ast.Constant):
            spec = ast.JoinedStr(values=[node.format_spec])  # 3.13 may give the spec as a Constant
            node = ast.FormattedValue(node.value, node.conversion, spec)
        if isinstance(node, ast.AST):
            h.update(b"(" + type(node).__name__.encode())
            body = getattr(node, "body", None)
            if isinstance(node, _DOC_OWNERS) and body and _is_docstring(body[0]):
                body = body[1:]
            for name in node._fields:
                value = body if name == "body" and isinstance(node, _DOC_OWNERS) else None
                value = value if value is not None else getattr(node, name, None)
                if value is None or value == []:
                    continue
                h.update(b" " + name.encode() + b"=")
                write(value)
            h.update(b")")
        elif isinstance(node, list):
            h.update(b"[")
            for item in node:
                write(item)
                h.update(b",")
            h.update(b"]")
        else:
            h.update(repr(node).encode())

    write(tree)
    return h.hexdigest()


def _fstring_parts(node: ast.JoinedStr) -> list[ast.expr]:
    """An f-string's parts without empty constants, adjacent constants joined: Python 3.12's
    parser adds an empty ``Constant('')`` after a nested field of a format spec
    (``f"{x:{width}}"``), 3.11's does not."""
    parts: list[ast.expr] = []
    for part in node.values:
        if isinstance(part, ast.Constant) and isinstance(part.value, str):
            if not part.value:
                continue
            if parts and isinstance(parts[-1], ast.Constant):
                parts[-1] = ast.Constant(parts[-1].value + part.value)
                continue
        parts.append(part)
    return parts


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _file_sha256(path: Path) -> str | None:
    """:func:`code_sha256` of a ``.py`` file (``None`` if it does not exist)."""
    return code_sha256(path.read_bytes()) if path.is_file() else None


def source_sha256(package_dir: str | Path = PACKAGE_DIR, files: Iterable[str] | None = None) -> str:
    """SHA-256 over the package's ``.py`` files: each one's relative path and :func:`code_sha256`.

    ``files``: only these paths (relative to ``package_dir``, e.g. ``"lora/layers.py"``; a
    missing one enters as missing); default every ``.py`` file of the package. File times,
    permissions, caches and git do not enter, so any copy of the same tree has the same hash;
    any change to the code of a module among them, or an added, removed or renamed module,
    changes it, while comments, formatting and docstrings do not.
    """
    root = Path(package_dir)
    h = hashlib.sha256()
    for rel in sorted(set(files)) if files is not None else _package_files(root):
        digest = _file_sha256(root / rel)
        h.update(rel.encode() + b"\0" + (bytes.fromhex(digest) if digest else b"missing"))
    return h.hexdigest()


def loaded_sources(package_dir: str | Path = PACKAGE_DIR) -> dict[str, str]:
    """``{path in the package: SHA-256}`` of the package's modules loaded in this process.

    These are the files whose code a run could have executed (a function-local import that a
    run never reached is not among them, and cannot have shaped its result).
    """
    root = Path(package_dir).resolve()
    out = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not path.endswith(".py"):
            continue
        path = Path(path).resolve()
        if path.is_relative_to(root) and path.is_file():
            out[path.relative_to(root).as_posix()] = _file_sha256(path)
    return dict(sorted(out.items()))


def source_changes(
    record: dict, package_dir: str | Path = PACKAGE_DIR, whole: str | None = None
) -> list[str]:
    """Why ``record`` was not made by the ``lorakit/`` code here: ``[]`` when it was.

    A record with ``source_files`` is compared on those files only (the modules its run
    loaded); an older record, on the whole package (``whole``: its hash, when the caller has
    it already).
    """
    recorded = record.get("source_sha256")
    if recorded is None:
        return ["no source_sha256 (written before records carried it)"]
    files = record.get("source_files")
    if isinstance(files, dict) and files:
        if recorded == source_sha256(package_dir, files):
            return []
        root = Path(package_dir)
        edited = [rel for rel, sha in files.items() if _file_sha256(root / rel) != sha]
        shown = ", ".join(edited[:4]) + (f" and {len(edited) - 4} more" if len(edited) > 4 else "")
        return [f"lorakit/ changed since: {shown}" if edited else "its source hash differs"]
    if recorded == (whole if whole is not None else source_sha256(package_dir)):
        return []
    return [f"lorakit/ changed since (recorded source {recorded[:12]}, whole package)"]


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
    """A record's ``data`` field from a DataSource (anything with ``provenance()``), a dict or
    None.
    """
    if data is None or isinstance(data, dict):
        return data
    if hasattr(data, "provenance"):
        return data.provenance()
    raise TypeError(f"data must be a DataSource, a dict or None, got {type(data).__name__}.")


def provenance(
    preset: str, seed: int | None, config: dict[str, Any], wall_s: float, data: Any = None
) -> dict:
    """The provenance block every record carries (``data``: see :func:`data_provenance`)."""
    loaded = loaded_sources()
    return {
        "preset": preset,
        "seed": seed,
        "config": config,
        "device": device_name(),
        "versions": _versions(),
        "commit": _commit(),
        "source_sha256": source_sha256(PACKAGE_DIR, loaded),
        "source_files": loaded,
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
