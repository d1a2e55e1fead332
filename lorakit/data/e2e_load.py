"""Reading and writing E2E-style records: the shipped synthetic JSONL and the real E2E CSVs.

Shipped set: ``data/e2e/{train,dev,test}.jsonl``, one record per line
``{"mr": ..., "refs": [...]}``, with ``MANIFEST.json`` (written by :mod:`lorakit.data.stats`)
recording the seed, the sizes and each file's SHA-256.

Real E2E (Novikova et al. 2017, https://github.com/tuetschek/e2e-dataset): ``trainset.csv``,
``devset.csv``, ``testset_w_refs.csv``, columns ``mr,ref``, one row per reference; rows with the
same ``mr`` become one record with many references (in the order of the file).

Which folder a split is read from (the shipped set, the real data in the cache, a folder of the
user's) is decided by :func:`lorakit.data.sources.data_source`; :func:`lorakit.data.load_e2e`
(in :mod:`lorakit.data.splits`) asks it, then reads the file with the readers here.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from lorakit.data.records import E2ERecord, parse_mr

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "e2e"
SPLITS = ("train", "dev", "test")
E2E_CSV = {"train": "trainset.csv", "dev": "devset.csv", "test": "testset_w_refs.csv"}
E2E_URL = "https://github.com/tuetschek/e2e-dataset"


class DataFileError(ValueError):
    """A data file exists but a line in it is not what the format needs (says which file/line)."""


def _read_text(path: Path) -> str:
    """The file's text as UTF-8 (a leading BOM dropped); a clear error, with the line, if it is
    not.
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataFileError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{data[err.start]:02x}); "
            "E2E files are UTF-8. Re-save the file as UTF-8 (e.g. `iconv -f "
            "latin1 -t utf-8`)."
        ) from None


def check_split(split: str) -> None:
    """Raise a ``ValueError`` naming the splits if ``split`` is not one of :data:`SPLITS`."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")


def write_jsonl(records: list[E2ERecord], path: str | Path) -> Path:
    """Write records as JSONL (UTF-8, ``\\n`` line ends, stable key order) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec.to_json(), ensure_ascii=False) + "\n")
    return path


def read_jsonl(path: str | Path) -> list[E2ERecord]:
    """Read a JSONL file of ``{"mr": str, "refs": [str, ...]}`` lines."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No data file at {path}. Regenerate the synthetic set with "
            "`python -m lorakit.data generate --out data/e2e`."
        )
    records = []
    for lineno, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            mr, refs = obj["mr"], obj["refs"]
            parse_mr(mr)
            if isinstance(refs, str):
                raise ValueError(
                    "'refs' is one string; it must be a list of strings, "
                    'e.g. ["The Eagle is a pub."]'
                )
            if (
                not isinstance(refs, list)
                or not refs
                or not all(isinstance(r, str) and r.strip() for r in refs)
            ):
                raise ValueError("'refs' must be a non-empty list of non-empty strings")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise DataFileError(
                f"{path}, line {lineno}: not a record "
                f'{{"mr": ..., "refs": [...]}} ({err}). Fix or '
                "regenerate the file."
            ) from err
        records.append(E2ERecord(mr, tuple(refs)))
    return records


def read_e2e_csv(path: str | Path) -> list[E2ERecord]:
    """Read one real-E2E CSV (columns ``mr,ref``) into records grouped by MR.

    Raises
    ------
    FileNotFoundError
        If the file is missing (the message says where to get the data).
    DataFileError
        If the header lacks ``mr``/``ref`` or a row is malformed (the message gives the line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No E2E file at {path}. Download the E2E NLG data from {E2E_URL} "
            f"and put {', '.join(E2E_CSV.values())} in one folder."
        )
    grouped: dict[str, list[str]] = {}
    with io.StringIO(_read_text(path), newline="") as f:  # a leading BOM is dropped
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        if "mr" not in header or "ref" not in header:
            raise DataFileError(
                f"{path}, line 1: header {header} lacks the columns 'mr' and "
                "'ref'; is this an E2E file with references (e.g. "
                "testset_w_refs.csv rather than testset.csv)?"
            )
        i_mr, i_ref = header.index("mr"), header.index("ref")
        for row in reader:
            if not row:
                continue
            where = f"{path}, line {reader.line_num}"
            if len(row) != len(header):
                raise DataFileError(
                    f"{where}: {len(row)} fields, expected {len(header)} "
                    f"({', '.join(header)}); check the quoting of that row."
                )
            mr, ref = row[i_mr].strip(), row[i_ref].strip()
            if not ref:
                raise DataFileError(f"{where}: empty reference text.")
            try:
                parse_mr(mr)
            except ValueError as err:
                raise DataFileError(f"{where}: {err}") from err
            grouped.setdefault(mr, []).append(ref)
    return [E2ERecord(mr, tuple(refs)) for mr, refs in grouped.items()]
