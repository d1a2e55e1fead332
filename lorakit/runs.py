"""Recorded runs: full-size results made on a GPU, kept as JSON in ``data/runs/`` (DESIGN §6).

A record carries its provenance: the preset and config, seed, device name, library versions,
git commit, date and wall time, so that a notebook can show it beside its own live run and say
plainly which is which.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

RUNS_DIR = Path(__file__).resolve().parent.parent / "data" / "runs"


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
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        sha = proc.stdout.strip() if proc.returncode == 0 else ""
        if not sha:
            return "unknown (not a git checkout; set LORAKIT_COMMIT)"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
            text=True, timeout=5, cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
        return (sha or "unknown") + ("+dirty" if sha and dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name() -> str:
    """A human name for the compute device (GPU model, or the CPU's architecture)."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.machine()})"


def provenance(preset: str, seed: int | None, config: dict[str, Any], wall_s: float) -> dict:
    """The provenance block every record carries."""
    return {
        "preset": preset,
        "seed": seed,
        "config": config,
        "device": device_name(),
        "versions": _versions(),
        "commit": _commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(float(wall_s), 2),
    }


def save_record(name: str, results: dict[str, Any], *, preset: str, config: dict[str, Any],
                wall_s: float, seed: int | None = None, out_dir: str | Path | None = None) -> Path:
    """Write ``{name}.json`` = results + provenance into ``out_dir`` (default ``data/runs``)."""
    out_dir = Path(out_dir) if out_dir is not None else RUNS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"name": name, "results": results, **provenance(preset, seed, config, wall_s)}
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, default=_jsonable) + "\n")
    return path


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
