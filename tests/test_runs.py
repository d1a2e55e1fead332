"""Records' provenance (source hash, data hashes, commit) and ``python -m lorakit.runs check``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lorakit import runs
from lorakit.data.sources import DataSource, data_source
from lorakit.runs.check import check_runs, main

FIXTURE = Path(__file__).parent / "fixtures" / "e2e_real"
ROOT = Path(__file__).resolve().parents[1]


def test_source_hash_depends_on_code_only_not_on_git_or_caches(tmp_path):
    copy = tmp_path / "lorakit"
    shutil.copytree(runs.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert runs.source_sha256(copy) == runs.source_sha256()  # a copy without .git, same hash
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (copy / ".ipynb_checkpoints").mkdir()
    (copy / ".ipynb_checkpoints" / "presets-checkpoint.py").write_text("x = 1\n")
    (copy / "NOTES.txt").write_text("not code")
    same = runs.source_sha256(copy)
    assert same == runs.source_sha256()
    presets = copy / "presets.py"
    presets.write_text(presets.read_text() + "\n# a comment\n")
    assert runs.source_sha256(copy) == same  # comments do not change what the code does
    presets.write_text(presets.read_text() + "\nEDITED = 1\n")
    edited = runs.source_sha256(copy)
    presets.rename(copy / "presets_renamed.py")
    assert len({same, edited, runs.source_sha256(copy)}) == 3


def test_code_hash_ignores_comments_formatting_and_docstrings():
    code = 'def f(x):\n    """Doc."""\n    return g("a long " "message", x)  # why\n'
    same = [
        'def f(x):\n    """Another doc."""\n    return g(\n        "a long message", x\n    )\n',
        "# a header comment\n\n\ndef f(x):\n    return g('a long message', x)\n",
    ]
    assert all(runs.code_sha256(s) == runs.code_sha256(code) for s in same)
    other = [
        'def f(x):\n    return g("a long message", x + 1)\n',
        'def f(y):\n    return g("a long message", y)\n',
        'def f(x):\n    return g("another message", x)\n',
    ]
    assert len({runs.code_sha256(s) for s in other} | {runs.code_sha256(code)}) == 4
    assert runs.code_sha256("def (:\n") == runs.code_sha256(b"def (:\n")  # bytes if no parse


def test_code_hash_is_the_same_for_every_parser_s_f_string_tree():
    import ast

    src = 'x = f"{k:<{width}} : {v}"\n'
    tree = ast.parse(src)  # Python 3.11: the spec is [Constant("<"), FormattedValue(width)]
    spec = tree.body[0].value.values[0].format_spec
    plain = runs.tree_sha256(tree)
    assert runs.code_sha256(src) == plain
    spec.values.append(ast.Constant(""))  # what Python 3.12's parser adds
    assert runs.tree_sha256(tree) == plain
    spec.values[:2] = [ast.Constant("<<"), spec.values[1]]  # a real change still counts
    assert runs.tree_sha256(tree) != plain
    fv = tree.body[0].value.values[0]
    fv.format_spec = ast.Constant("<")  # 3.13 may give a spec without fields as a Constant
    other = ast.parse('x = f"{k:<} : {v}"\n')
    assert runs.tree_sha256(tree) == runs.tree_sha256(other)


def test_a_record_is_stale_only_when_a_module_its_run_loaded_changes(tmp_path):
    copy = tmp_path / "lorakit"
    shutil.copytree(runs.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    rec = {"source_files": runs.loaded_sources(), "results": {}}
    assert "runs/__init__.py" in rec["source_files"]
    rec["source_files"].pop("bench/e2e_step.py", None)  # as if the run never loaded it
    rec["source_sha256"] = runs.source_sha256(copy, rec["source_files"])
    assert runs.source_changes(rec, copy) == []
    bench = copy / "bench" / "e2e_step.py"
    bench.write_text(bench.read_text() + "\n# an edit the run never loaded\n")
    assert runs.source_changes(rec, copy) == []
    layers = copy / "lora" / "layers.py"
    layers.write_text(layers.read_text() + "\nEDITED = True  # code the run ran\n")
    assert runs.source_changes(rec, copy) == ["lorakit/ changed since: lora/layers.py"]
    layers.unlink()
    assert runs.source_changes(rec, copy) == ["lorakit/ changed since: lora/layers.py"]
    old = {"source_sha256": runs.source_sha256(copy), "results": {}}  # no source_files
    assert runs.source_changes(old, copy) == []
    bench.write_text("x = 2\n")
    assert "whole package" in runs.source_changes(old, copy)[0]


def test_save_record_computes_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAKIT_COMMIT", "abc1234")
    src = DataSource("dir", FIXTURE)
    path = runs.save_record(
        "demo",
        {"bleu": 1.0},
        preset="ci",
        config={"k": 1},
        wall_s=2.0,
        seed=0,
        out_dir=tmp_path,
        data=src,
    )
    rec = runs.load_record("demo", tmp_path)
    assert path == tmp_path / "demo.json" and rec["results"] == {"bleu": 1.0}
    assert rec["commit"] == "abc1234" and "runs/__init__.py" in rec["source_files"]
    assert rec["source_sha256"] == runs.source_sha256(runs.PACKAGE_DIR, rec["source_files"])
    assert runs.source_changes(rec) == []
    assert rec["data"]["source"] == "dir" and set(rec["data"]["files"]) == {
        "trainset.csv",
        "devset.csv",
        "testset_w_refs.csv",
    }
    runs.save_record("bench", {}, preset="ci", config={}, wall_s=0, out_dir=tmp_path)
    assert runs.load_record("bench", tmp_path)["data"] is None  # a run that reads no data file
    assert list(tmp_path.glob(".*")) == []  # written atomically, no temporary file left
    with pytest.raises(TypeError, match="DataSource, a dict or None"):
        runs.save_record("bad", {}, preset="ci", config={}, wall_s=0, out_dir=tmp_path, data=3)


def _write(path: Path, **fields) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"name": path.stem, "results": {}, **fields}))


def test_check_lists_old_changed_and_unverifiable_records(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LORAKIT_CACHE", str(tmp_path / "empty_cache"))
    data_dir = tmp_path / "mydata"
    shutil.copytree(FIXTURE, data_dir)
    recs = tmp_path / "runs"
    for name in ("fresh", "data_edited"):
        runs.save_record(
            name, {}, preset="ci", config={}, wall_s=0, out_dir=recs, data=data_source(data_dir)
        )
    runs.save_record(
        "synthetic",
        {},
        preset="ci",
        config={},
        wall_s=0,
        out_dir=recs,
        data=data_source("synthetic"),
    )
    runs.save_record("latency", {}, preset="ci", config={}, wall_s=0, out_dir=recs / "bench")
    _write(recs / "old.json", commit="9a9ef97")
    _write(recs / "bench" / "old_bench.json", commit="9a9ef97")
    _write(recs / "other_code.json", source_sha256="0" * 64, data=None)
    _write(
        recs / "real.json",
        source_sha256=runs.source_sha256(),
        data={"source": "real", "path": "<cache>/e2e_real", "files": {"trainset.csv": "ab"}},
    )
    (recs / "notes.json").write_text(json.dumps({"not": "a record"}))
    edited = json.loads((recs / "data_edited.json").read_text())
    edited["data"]["files"]["devset.csv"] = "0" * 64  # as if devset.csv changed after the run
    (recs / "data_edited.json").write_text(json.dumps(edited))

    findings = {f.path.stem: f for f in check_runs(recs)}
    assert set(findings) == {
        "fresh",
        "data_edited",
        "synthetic",
        "latency",
        "old",
        "old_bench",
        "other_code",
        "real",
    }
    assert not findings["fresh"].stale and not findings["fresh"].unverified
    assert not findings["synthetic"].stale and not findings["latency"].stale
    assert findings["data_edited"].stale == ["data file devset.csv (dir) changed"]
    assert len(findings["old"].stale) == 2 and len(findings["old_bench"].stale) == 2
    assert findings["other_code"].stale[0].startswith("lorakit/ changed since")
    assert not findings["real"].stale and "not on this machine" in findings["real"].unverified[0]

    assert main(["check", str(recs)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    listed = sorted(line.split()[1].rsplit("/", 1)[-1].rstrip(":") for line in lines[:-1])
    assert listed == [
        "data_edited.json",
        "old.json",
        "old_bench.json",
        "other_code.json",
        "real.json",
    ]  # one line per record that is stale or unverified
    assert lines[-1].startswith("4 of 8 records stale, 1 unverified")
    assert main(["check", str(recs), "--strict"]) == 1
    for name in ("old", "old_bench", "other_code", "data_edited"):
        (recs / f"{name}.json").unlink(missing_ok=True)
    (recs / "bench" / "old_bench.json").unlink()
    assert main(["check", str(recs), "--strict"]) == 0


def test_the_command_line_and_the_shipped_records_still_load():
    proc = subprocess.run(
        [sys.executable, "-m", "lorakit.runs", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "records stale" in proc.stdout.splitlines()[-1] and "Warning" not in proc.stderr
    for path in sorted((ROOT / "data" / "runs").glob("*.json")):
        rec = runs.load_record(path.stem)
        assert rec["name"] == path.stem and "results" in rec and "commit" in rec


def test_checking_many_records_hashes_each_module_once(tmp_path, monkeypatch):
    from lorakit.runs import check

    calls = []

    def counted(source):
        calls.append(source)
        return runs.code_sha256(source)

    monkeypatch.setattr(check, "code_sha256", counted)
    copy = tmp_path / "lorakit"
    shutil.copytree(runs.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    files = runs.loaded_sources()
    rec = {"source_files": files, "source_sha256": runs.source_sha256(copy, files), "results": {}}
    hashes = check.CodeHashes(copy)
    assert hashes.sha256(files) == rec["source_sha256"]
    for _ in range(5):
        assert hashes.changes(rec) == [] == runs.source_changes(rec, copy)
    assert len(calls) == len(files)  # each module parsed once for five checks

    layers = copy / "lora" / "layers.py"
    layers.write_text(layers.read_text() + "\nEDITED = True\n")
    for _ in range(3):
        assert hashes.changes(rec) == ["lorakit/ changed since: lora/layers.py"]
    assert len(calls) == len(files) + 1  # the edit is seen, and only the edited file re-parsed
    assert hashes.changes(rec) == runs.source_changes(rec, copy)
    layers.unlink()
    assert hashes.file("lora/layers.py") is None
    assert hashes.changes(rec) == runs.source_changes(rec, copy)
    assert hashes.changes({**rec, "source_sha256": "0" * 64}) == [
        "lorakit/ changed since: lora/layers.py"
    ]

    shutil.copy(runs.PACKAGE_DIR / "lora" / "layers.py", layers)
    assert hashes.changes(rec) == []
    assert hashes.changes({**rec, "source_sha256": "0" * 64}) == ["its source hash differs"]
    old = {"source_sha256": runs.source_sha256(copy), "results": {}}  # no source_files
    assert hashes.changes(old) == [] == runs.source_changes(old, copy)


def test_checking_the_shipped_records_parses_each_module_at_most_once(monkeypatch):
    from lorakit.runs import check

    calls = []
    monkeypatch.setattr(check, "code_sha256", lambda s: calls.append(s) or runs.code_sha256(s))
    monkeypatch.setattr(check, "_INSTALLED", None)
    findings = check.check_runs()
    assert len(findings) > 50
    assert 0 < len(calls) <= len(list(runs.PACKAGE_DIR.rglob("*.py")))
    for _ in range(2):  # the claims table checks a record once per claim that reads it
        again = check.check_runs()
        assert [(f.path, f.stale) for f in again] == [(f.path, f.stale) for f in findings]
    assert len(calls) <= len(list(runs.PACKAGE_DIR.rglob("*.py")))
