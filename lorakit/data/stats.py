"""Statistics of an E2E-style data set, and the ``MANIFEST.json`` that records them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lorakit.data.e2e_load import SPLITS, read_jsonl


def sha256(path: str | Path) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_manifest(out_dir: str | Path, seed: int, command: str) -> Path:
    """Write ``MANIFEST.json``: seed, command, and per split file the record/ref counts and SHA-256."""
    out_dir = Path(out_dir)
    files = {}
    for split in SPLITS:
        path = out_dir / f"{split}.jsonl"
        if path.is_file():
            recs = read_jsonl(path)
            files[path.name] = {"records": len(recs), "refs": sum(len(r.refs) for r in recs),
                                "sha256": sha256(path)}
    manifest = {"generator": "lorakit.data.e2e_generate", "seed": seed, "command": command,
                "files": files}
    path = out_dir / "MANIFEST.json"
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
