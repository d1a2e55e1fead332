"""A split's records from wherever they come from: :func:`load_e2e` and :func:`domain_text`.

:func:`lorakit.data.sources.data_source` decides the folder (the shipped synthetic set, the real
E2E data in the cache, a folder of the user's); the readers of :mod:`lorakit.data.e2e_load` read
its file (JSONL or the real CSVs).
"""

from __future__ import annotations

from pathlib import Path

from lorakit.data.e2e_load import check_split, read_e2e_csv, read_jsonl
from lorakit.data.records import E2ERecord
from lorakit.data.sources import data_source


def load_e2e(
    split: str = "train", source=None, *, root: str | Path | None = None, cache_dir=None
) -> list[E2ERecord]:
    """Load a split as records.

    Parameters
    ----------
    split : "train", "dev" or "test".
    source : ``"auto"`` (the default), ``"synthetic"``, ``"real"``, a folder holding
        ``{split}.jsonl`` or the real E2E CSVs, or a :class:`lorakit.data.sources.DataSource`
        from :func:`lorakit.data.sources.data_source` (resolve once, then load every split from
        it; the DataSource says which data was used, for records).
    root : the former name of a folder ``source``; still accepted.
    cache_dir : the lorakit cache, where the real data is kept.

    The default is ``"auto"``, as for :func:`lorakit.models.load_base`: a learner with network
    access gets the real E2E benchmark of the paper without asking for it, and everyone else
    the shipped synthetic set, with one printed notice saying so. Code that needs one set
    whatever the machine (a test, a statistic of the shipped set) asks for it by name.

    Raises
    ------
    FileNotFoundError
        The folder lacks the split's file, or ``source`` is no keyword and no folder.
    lorakit.data.sources.RealDataUnavailable
        ``"real"`` was asked for and is neither cached nor downloadable.
    DataFileError
        A line of the file is malformed (the message gives file and line).
    """
    check_split(split)
    if root is not None:
        if source is not None:
            raise TypeError("Give either source or root (its former name), not both.")
        source = root
    path = data_source("auto" if source is None else source, cache_dir).split_file(split)
    return read_jsonl(path) if path.suffix == ".jsonl" else read_e2e_csv(path)


def domain_text(split: str = "train", source="synthetic") -> list[str]:
    """The references of a split without their MRs: unpaired in-domain prose.

    Meant for mixing restaurant-description text into the offline base model's pretraining
    corpus; use the train split only, so dev/test texts stay unseen. The default source is the
    shipped synthetic set, not "auto": the offline base is cached under the hash of its corpus,
    which must not change with what a machine has downloaded.
    """
    return [ref for rec in load_e2e(split, source) for ref in rec.refs]
