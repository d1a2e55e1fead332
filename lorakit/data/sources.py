"""Where E2E records come from: the shipped synthetic set, the real E2E data, or a folder.

:func:`data_source` turns what a caller asks for into a :class:`DataSource`, a folder with the
three split files plus the facts a record needs (which source, the SHA-256 of each file):

* ``"synthetic"``: the E2E-style set made by :mod:`lorakit.data.e2e_generate`, shipped in
  ``data/e2e`` (JSONL);
* ``"real"``: the E2E NLG data of Novikova et al. (2017), CC BY-SA 4.0, kept in the lorakit cache
  (``$LORAKIT_CACHE`` or ``~/.cache/lorakit``, folder ``e2e_real``) and downloaded into it once,
  when network access is allowed: through the ``datasets`` library if it is installed (hub id
  ``tuetschek/e2e_nlg``, its Parquet export, columns ``meaning_representation`` and
  ``human_reference``), else as the CSVs ``trainset.csv``, ``devset.csv`` and
  ``testset_w_refs.csv`` of https://github.com/tuetschek/e2e-dataset. Either way the cache holds
  those three CSVs, written atomically with a manifest of their hashes;
* ``"auto"``: real when it is in the cache or can be downloaded now, else synthetic, with one
  printed notice per process saying why and how to get the real data (as
  :func:`lorakit.models.load_base` falls back to the offline base);
* any other string or path: a folder holding ``{split}.jsonl`` or the real CSVs.

``python -m lorakit.data.sources`` downloads the real data into the cache (or says it is there).
"""

from __future__ import annotations

import argparse
import csv
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lorakit.data.e2e_load import DATA_DIR, E2E_CSV, E2E_URL, SPLITS, read_e2e_csv

KINDS = ("synthetic", "real", "dir")
REAL_ENTRY = "e2e_real"
RAW_URL = "https://raw.githubusercontent.com/tuetschek/e2e-dataset/master/"
HUB_ID, HUB_REVISION = "tuetschek/e2e_nlg", "refs/convert/parquet"
HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
TIMEOUT_S = 20.0

_AUTO: dict[str, DataSource] = {}  # cache folder -> what "auto" resolved to in this process
_NOTICE_SHOWN = False


class RealDataUnavailable(RuntimeError):
    """The real E2E data is not in the cache and cannot be downloaded here.

    ``why`` is the reason in a few words; the message adds what to do.
    """

    def __init__(self, why: str, how: str) -> None:
        super().__init__(f"{why}. {how}")
        self.why = why


@dataclass(frozen=True)
class DataSource:
    """A resolved data source: a folder with the splits, and how it was chosen.

    Attributes
    ----------
    kind : ``"synthetic"``, ``"real"`` or ``"dir"``.
    root : the folder holding ``{split}.jsonl`` or the real CSVs.
    notice : why ``"auto"`` fell back to the synthetic set (``None`` when it did not).
    """

    kind: str
    root: Path
    notice: str | None = None

    def split_file(self, split: str) -> Path:
        """The file of ``split``: ``{split}.jsonl`` if present, else the real E2E CSV name."""
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
        jsonl, csv_path = self.root / f"{split}.jsonl", self.root / E2E_CSV[split]
        if jsonl.is_file():
            return jsonl
        if csv_path.is_file():
            return csv_path
        raise FileNotFoundError(
            f"Neither {jsonl.name} nor {csv_path.name} is in {self.root}. Use the shipped set "
            "(source='synthetic'), regenerate it with `python -m lorakit.data generate --out "
            f"{self.root}`, or download the real E2E data from {E2E_URL}."
        )

    def files(self, splits=SPLITS) -> dict[str, str]:
        """``{file name: SHA-256}`` of the files of ``splits`` (the ones an experiment reads)."""
        from lorakit.fileio import file_sha256

        return {self.split_file(s).name: file_sha256(self.split_file(s)) for s in splits}

    def provenance(self, splits=SPLITS) -> dict:
        """What a record stores: ``{"source", "path", "files": {name: sha256}, "notice"}``.

        ``path`` is ``data/e2e`` for the shipped set, ``<cache>/e2e_real`` for the real data (both
        found again by :func:`locate` on another machine) and the absolute folder otherwise.
        """
        path = {"synthetic": "data/e2e", "real": f"<cache>/{REAL_ENTRY}"}.get(
            self.kind, str(self.root.resolve())
        )
        return {
            "source": self.kind,
            "path": path,
            "files": self.files(splits),
            "notice": self.notice,
        }

    def __str__(self) -> str:
        from lorakit.models.info import short_path

        return f"{self.kind} E2E data in {short_path(self.root)}"


def real_entry(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder of the real E2E data (it may not exist)."""
    from lorakit.models.cache import cache_root

    return cache_root(cache_dir) / REAL_ENTRY


def locate(provenance: dict, cache_dir=None) -> Path | None:
    """The folder a record's ``data`` block refers to on this machine (``None`` if unknown)."""
    kind = provenance.get("source")
    if kind == "synthetic":
        return DATA_DIR
    if kind == "real":
        return real_entry(cache_dir)
    path = provenance.get("path")
    return Path(path) if path else None


def cached_real(cache_dir=None) -> Path | None:
    """The real data's cache folder if it is complete (every file matches its manifest)."""
    from lorakit.models.cache import verify_entry

    entry = real_entry(cache_dir)
    return entry if verify_entry(entry) is None else None


def download_problem() -> str | None:
    """``None`` if a download may be tried now, else why not (offline flag, or no network)."""
    from lorakit.models.hub import hub_offline, network_problem

    if hub_offline():
        return "HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE forbid downloading it"
    return network_problem()


def _write_rows(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("mr", "ref"))
        writer.writerows(rows)


def _from_hub(dest: Path) -> None:
    import datasets  # optional: ImportError sends the caller to the CSVs

    for split, hub_split in HUB_SPLITS.items():
        table = datasets.load_dataset(
            HUB_ID, revision=HUB_REVISION, data_dir="default", split=hub_split
        )
        _write_rows(
            dest / E2E_CSV[split], zip(table["meaning_representation"], table["human_reference"])
        )


def _from_github(dest: Path) -> None:
    for name in E2E_CSV.values():
        with urllib.request.urlopen(RAW_URL + name, timeout=TIMEOUT_S) as response:
            (dest / name).write_bytes(response.read())


def download_real(dest: Path) -> str:
    """Write the three real E2E CSVs into ``dest``; return the route taken (for the manifest)."""
    try:
        _from_hub(dest)
        return f"datasets: {HUB_ID}@{HUB_REVISION}"
    except ImportError:
        pass
    except Exception as err:  # noqa: BLE001 - any hub failure: the CSVs are the primary source
        print(
            f"lorakit: the datasets route failed ({type(err).__name__}: {err}); "
            "downloading the CSVs instead."
        )
    _from_github(dest)
    return f"csv: {RAW_URL}"


def fetch_real(cache_dir=None, verbose: bool = True) -> Path:
    """The real E2E data's cache folder, downloaded into the cache first if it is not there.

    Raises
    ------
    RealDataUnavailable
        Not cached, and downloading is forbidden, impossible, or fails (the message says why and
        what to do). Nothing is left in the cache then.
    """
    from lorakit.models.cache import verify_entry, write_entry
    from lorakit.models.info import short_path

    entry = real_entry(cache_dir)
    problem = verify_entry(entry)
    if problem is None:
        return entry
    how = (
        f"Download trainset.csv, devset.csv and testset_w_refs.csv from {E2E_URL} and pass "
        "their folder as the source instead, or connect to the internet once."
    )
    why = download_problem()
    if why:
        raise RealDataUnavailable(f"not in the cache at {short_path(entry)} and {why}", how)
    if verbose:
        print(f"lorakit: downloading the real E2E data (about 12 MB) into {entry}")
    meta: dict = {"url": E2E_URL, "license": "CC BY-SA 4.0"}

    def fill(tmp: Path) -> None:
        meta["route"] = download_real(tmp)
        for split in SPLITS:  # a truncated or HTML download fails here, before it is cached
            recs = read_e2e_csv(tmp / E2E_CSV[split])
            meta[split] = {"mrs": len(recs), "refs": sum(len(r.refs) for r in recs)}

    try:
        write_entry(entry, fill, meta)
    except Exception as err:  # noqa: BLE001 - network, format or disk: one clear error
        raise RealDataUnavailable(
            f"downloading it failed ({type(err).__name__}: {err})", how
        ) from err
    return entry


def _fallback(why: str) -> DataSource:
    global _NOTICE_SHOWN
    notice = (
        f"the real E2E data is not available ({why}): using the synthetic E2E-style set "
        "shipped in data/e2e instead. To use the real data, run `python -m "
        "lorakit.data.sources` once with network access, or pass a folder holding "
        f"{', '.join(E2E_CSV.values())} (from {E2E_URL}) as the source (--data DIR)."
    )
    if not _NOTICE_SHOWN:
        print(f"lorakit: {notice}")
        _NOTICE_SHOWN = True
    return DataSource("synthetic", DATA_DIR, notice)


def data_source(
    source: str | os.PathLike | DataSource = "auto", cache_dir=None, verbose: bool = True
) -> DataSource:
    """Resolve a data source once, so that every split comes from the same place.

    Parameters
    ----------
    source : ``"auto"``, ``"synthetic"``, ``"real"``, a folder, or an already resolved
        :class:`DataSource` (returned as is). A folder literally named like a keyword is passed
        as ``"./real"``.
    cache_dir : the lorakit cache (default ``$LORAKIT_CACHE`` or ``~/.cache/lorakit``).
    verbose : print the download message (the fallback notice always prints, once per process).

    Raises
    ------
    RealDataUnavailable
        ``"real"`` was asked for and cannot be had.
    FileNotFoundError
        ``source`` is neither a keyword nor an existing folder.
    """
    if isinstance(source, DataSource):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"source must be a string, a path or a DataSource, got {type(source).__name__}."
        )
    key = os.fspath(source)
    if key == "synthetic":
        return DataSource("synthetic", DATA_DIR)
    if key == "real":
        return DataSource("real", fetch_real(cache_dir, verbose))
    if key == "auto":
        slot = str(real_entry(cache_dir))
        if slot not in _AUTO:
            try:
                _AUTO[slot] = DataSource("real", fetch_real(cache_dir, verbose))
            except RealDataUnavailable as err:
                _AUTO[slot] = _fallback(err.why)
        return _AUTO[slot]
    root = Path(key).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"No data folder at {root}. A data source is 'auto', 'synthetic', "
            "'real', or a folder holding {split}.jsonl or the real E2E CSVs "
            f"({', '.join(E2E_CSV.values())})."
        )
    return DataSource("dir", root)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lorakit.data.sources",
        description="Download the real E2E data into the cache.",
    )
    parser.add_argument("--cache", default=None, help="the lorakit cache (default: as usual)")
    args = parser.parse_args(argv)
    try:
        src = DataSource("real", fetch_real(args.cache))
    except RealDataUnavailable as err:
        raise SystemExit(f"lorakit: the real E2E data is not available: {err}") from None
    print(f"{src}:")
    for name, digest in src.files().items():
        print(f"  {name}  sha256 {digest}")


if __name__ == "__main__":
    main()
