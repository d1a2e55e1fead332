"""The E2E-style data-to-text task of chapter 6 (LoRA paper §5.4 and Appendix D.2).

* :mod:`lorakit.data.records`: the record (an MR and its references), ``parse_mr``/``format_mr``;
* :mod:`lorakit.data.e2e_generate`: the project's own synthetic E2E-style generator;
* :mod:`lorakit.data.e2e_load`: the shipped JSONL set, the real E2E CSVs, ``domain_text``;
* :mod:`lorakit.data.collate`: (MR, reference) pairs -> length-bucketed batches for
  :func:`lorakit.train.train`, and left-padded prompts for decoding.

``python -m lorakit.data generate --out data/e2e`` regenerates the shipped set byte for byte.
"""

from lorakit.data.collate import (
    IGNORE_INDEX,
    SEPARATOR,
    Example,
    LengthBucketBatches,
    collate,
    make_batches,
    make_examples,
    pad_id_of,
    prompt_batches,
    prompt_text,
)
from lorakit.data.e2e_generate import generate_splits
from lorakit.data.e2e_load import (
    DATA_DIR,
    E2E_CSV,
    SPLITS,
    DataFileError,
    domain_text,
    load_e2e,
    read_e2e_csv,
    read_jsonl,
    write_jsonl,
)
from lorakit.data.records import SLOTS, E2ERecord, format_mr, parse_mr

__all__ = [
    "DATA_DIR", "E2E_CSV", "IGNORE_INDEX", "SEPARATOR", "SLOTS", "SPLITS", "DataFileError",
    "E2ERecord", "Example", "LengthBucketBatches", "collate", "domain_text", "format_mr",
    "generate_splits", "load_e2e", "make_batches", "make_examples", "pad_id_of", "parse_mr",
    "prompt_batches", "prompt_text", "read_e2e_csv", "read_jsonl", "write_jsonl",
]
