"""lorakit.fileio: a failed write leaves the old file or folder as it was and no temporary left."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lorakit.fileio import atomic_folder, atomic_write, commit, file_sha256, stage


def _broken(tmp):
    Path(tmp).write_text("half")
    raise OSError("disk full")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "weights.safetensors"
    assert atomic_write(target, lambda tmp: Path(tmp).write_text("old")) == target
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, _broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.safetensors"]  # no temp file left


def test_stage_writes_a_hidden_file_that_commit_renames_into_place(tmp_path):
    target = tmp_path / "sub" / "adapter.safetensors"
    tmp = stage(target, lambda t: Path(t).write_bytes(b"new"))
    assert tmp.parent == target.parent and tmp.name.startswith(".adapter.safetensors.")
    assert tmp.suffix == ".tmp" and not target.exists()
    assert commit(tmp, target) == target and target.read_bytes() == b"new" and not tmp.exists()
    with pytest.raises(OSError, match="disk full"):
        stage(target, _broken)
    assert [p.name for p in target.parent.iterdir()] == ["adapter.safetensors"]


def test_atomic_folder_replaces_a_folder_only_when_the_new_one_is_complete(tmp_path):
    entry = tmp_path / "entry"
    atomic_folder(entry, lambda d: (d / "a.txt").write_text("one"))
    assert (entry / "a.txt").read_text() == "one"

    def half(d):
        (d / "a.txt").write_text("two")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_folder(entry, half)
    assert (entry / "a.txt").read_text() == "one"
    atomic_folder(entry, lambda d: (d / "b.txt").write_text("two"))
    assert [p.name for p in entry.iterdir()] == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]  # no temporary or old folder left


def test_file_sha256_is_the_hash_of_the_bytes(tmp_path):
    data = bytes(range(256)) * 40_000  # larger than one read chunk
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()
