"""The real E2E data: the CSV format (an invented fixture), the cache, the download, "auto"."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import pytest

from lorakit.data import (
    DATA_DIR,
    E2E_CSV,
    DataFileError,
    domain_text,
    load_e2e,
    read_e2e_csv,
    sources,
)
from lorakit.data.sources import DataSource, RealDataUnavailable, data_source, fetch_real
from lorakit.fileio import file_sha256
from lorakit.models.cache import MANIFEST, write_entry

FIXTURE = Path(__file__).parent / "fixtures" / "e2e_real"
LAMP = "name[The Brass Lamp], eatType[pub], food[Indian], area[city centre]"


@pytest.fixture(autouse=True)
def fresh_process_state(monkeypatch, tmp_path):
    """Each test: an empty cache of its own, offline, and "auto" not yet resolved."""
    monkeypatch.setenv("LORAKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sources, "_AUTO", {})
    monkeypatch.setattr(sources, "_NOTICE_SHOWN", False)


def _copy_fixture(dest: Path) -> str:
    for name in E2E_CSV.values():
        shutil.copy(FIXTURE / name, dest / name)
    return "test copy"


def test_real_csv_format_quoting_multi_reference_bom_and_crlf():
    train = load_e2e("train", str(FIXTURE))
    assert [r.mr for r in train] == [
        LAMP,
        "name[Quiet Heron], priceRange[less than £20], familyFriendly[yes]",
        "name[Saltmarsh], eatType[coffee shop], customer rating[3 out of 5], near[The Old Mill]",
    ]
    assert train[0].refs == (  # rows 1, 2 and 4 of the file, in file order
        "The Brass Lamp is a pub in the city centre that serves Indian food.",
        "In the city centre, The Brass Lamp, a pub, offers Indian dishes.",
        'For Indian food, try the pub called "The Brass Lamp", downtown.',
    )
    assert train[1].slots["priceRange"] == "less than £20"
    assert train[2].slots["customer rating"] == "3 out of 5"
    dev = load_e2e("dev", FIXTURE)  # starts with a byte-order mark, CRLF line ends
    assert [len(r.refs) for r in dev] == [2, 1] and dev[0].mr.startswith("name[Copper Finch]")
    assert not any("\r" in ref for r in dev for ref in r.refs)
    test = load_e2e("test", FIXTURE)
    assert [len(r.refs) for r in test] == [2, 1]
    assert load_e2e("test", root=FIXTURE) == test  # the former keyword still works


def test_a_malformed_row_names_its_file_and_line(tmp_path):
    _copy_fixture(tmp_path)
    with open(tmp_path / "trainset.csv", "a", encoding="utf-8") as f:
        f.write('"name[Broken, eatType[pub]","An MR whose bracket is never closed."\n')
    with pytest.raises(DataFileError, match=r"trainset\.csv, line 7: Cannot parse"):
        load_e2e("train", tmp_path)
    (tmp_path / "devset.csv").write_text('mr,ref\n"name[A]","x","extra field"\n')
    with pytest.raises(DataFileError, match=r"devset\.csv, line 2: 3 fields"):
        read_e2e_csv(tmp_path / "devset.csv")


def test_sources_by_name_folder_and_errors(tmp_path):
    assert data_source("synthetic") == DataSource("synthetic", DATA_DIR)
    assert load_e2e("dev", "synthetic") == load_e2e("dev", DATA_DIR)
    folder = data_source(FIXTURE)
    assert folder.kind == "dir" and data_source(folder) is folder
    assert folder.split_file("test").name == "testset_w_refs.csv"
    prov = folder.provenance()
    assert prov["source"] == "dir" and prov["path"] == str(FIXTURE.resolve())
    assert prov["files"]["trainset.csv"] == file_sha256(FIXTURE / "trainset.csv")
    assert data_source("synthetic").provenance()["path"] == "data/e2e"
    with pytest.raises(FileNotFoundError, match="'auto', 'synthetic', 'real', or a folder"):
        load_e2e("train", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="trainset.csv"):
        load_e2e("train", tmp_path)  # a folder without the split's file
    with pytest.raises(TypeError, match="either source or root"):
        load_e2e("train", "synthetic", root=FIXTURE)
    with pytest.raises(ValueError, match="Unknown split"):
        load_e2e("validation", "synthetic")


def test_auto_offline_falls_back_to_synthetic_with_one_notice(capsys):
    first = load_e2e("dev")
    again = load_e2e("test", "auto")
    src = data_source("auto")
    out = capsys.readouterr().out
    assert out.count("lorakit: the real E2E data is not available") == 1
    assert "HF_HUB_OFFLINE" in out and "python -m lorakit.data.sources" in out
    assert src.kind == "synthetic" and src.root == DATA_DIR and "HF_HUB_OFFLINE" in src.notice
    assert first == load_e2e("dev", "synthetic") and again == load_e2e("test", "synthetic")
    assert src.provenance()["notice"] == src.notice
    assert domain_text("train")[0] == load_e2e("train", "synthetic")[0].refs[0]


def test_real_when_offline_and_not_cached_is_a_clear_error(tmp_path):
    with pytest.raises(RealDataUnavailable, match="not in the cache.*e2e-dataset") as err:
        load_e2e("train", "real")
    assert "HF_HUB_OFFLINE" in err.value.why
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_the_cache_folder_is_found_and_used_offline(tmp_path, capsys):
    entry = tmp_path / "cache" / "e2e_real"
    assert sources.real_entry() == entry  # $LORAKIT_CACHE, as lorakit.models.cache finds it
    write_entry(entry, _copy_fixture)
    src = data_source("auto")
    assert src == DataSource("real", entry) and capsys.readouterr().out == ""
    assert load_e2e("train") == load_e2e("train", FIXTURE)
    assert src.provenance()["files"] == {n: file_sha256(FIXTURE / n) for n in E2E_CSV.values()}
    assert src.provenance()["path"] == "<cache>/e2e_real"
    assert sources.locate(src.provenance()) == entry


def test_a_corrupt_cache_entry_is_not_used(tmp_path, capsys):
    entry = tmp_path / "cache" / "e2e_real"
    write_entry(entry, _copy_fixture)
    (entry / "devset.csv").write_text("mr,ref\n")  # no longer matches the manifest
    assert data_source("auto").kind == "synthetic"
    assert "not available" in capsys.readouterr().out


def test_download_writes_the_cache_atomically(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "download_problem", lambda: None)  # "the network is there"
    monkeypatch.setattr(sources, "download_real", _copy_fixture)
    entry = fetch_real(verbose=False)
    assert entry == tmp_path / "cache" / "e2e_real"
    manifest = json.loads((entry / MANIFEST).read_text())
    assert set(manifest["files"]) == set(E2E_CSV.values())
    assert manifest["meta"]["route"] == "test copy" and manifest["meta"]["train"]["refs"] == 5
    assert data_source("real").root == entry and load_e2e("dev", "real") == load_e2e("dev", FIXTURE)

    def half_then_fail(dest: Path) -> str:
        shutil.copy(FIXTURE / "trainset.csv", dest / "trainset.csv")
        raise ConnectionResetError("connection dropped")

    shutil.rmtree(entry)
    monkeypatch.setattr(sources, "download_real", half_then_fail)
    with pytest.raises(RealDataUnavailable, match="connection dropped"):
        fetch_real(verbose=False)
    assert list((tmp_path / "cache").iterdir()) == []  # no entry, no temporary folder

    def html_page(dest: Path) -> str:
        for name in E2E_CSV.values():
            (dest / name).write_text("<html><body>rate limited</body></html>\n")
        return "csv"

    monkeypatch.setattr(sources, "download_real", html_page)
    with pytest.raises(RealDataUnavailable, match="lacks the columns"):
        fetch_real(verbose=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_download_routes_write_the_csv_format(tmp_path, monkeypatch):
    rows = {
        "train": [(LAMP, 'A pub, "quoted", in town.')],
        "validation": [(LAMP, "Dev text.")],
        "test": [(LAMP, "Test text.")],
    }
    calls = []

    def load_dataset(repo, revision, data_dir, split):
        calls.append((repo, revision, data_dir, split))
        mrs, refs = zip(*rows[split])
        return {"meaning_representation": list(mrs), "human_reference": list(refs)}

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    assert sources.download_real(tmp_path).startswith("datasets: tuetschek/e2e_nlg")
    assert [c[3] for c in calls] == ["train", "validation", "test"]
    assert load_e2e("train", tmp_path)[0].refs == ('A pub, "quoted", in town.',)

    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed: the CSVs are fetched
    urls = []

    class Response:
        def __init__(self, url):
            urls.append(url)
            self.body = (FIXTURE / url.rsplit("/", 1)[1]).read_bytes()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return self.body

    monkeypatch.setattr(sources.urllib.request, "urlopen", lambda url, timeout: Response(url))
    out = tmp_path / "csv"
    out.mkdir()
    assert sources.download_real(out).startswith("csv:")
    assert urls == [
        sources.RAW_URL + n for n in ("trainset.csv", "devset.csv", "testset_w_refs.csv")
    ]
    assert load_e2e("test", out) == load_e2e("test", FIXTURE)
