"""The E2E-style data-to-text task of chapter 6 (LoRA paper §5.4 and Appendix D.3).

* :mod:`lorakit.data.records`: the record (an MR and its references), ``parse_mr``/``format_mr``;
* :mod:`lorakit.data.e2e_generate`: the project's own synthetic E2E-style generator (writer
  styles in :mod:`~lorakit.data.e2e_plans` and :mod:`~lorakit.data.e2e_writer`, phrasings in
  :mod:`~lorakit.data.e2e_phrases`, invented names in :mod:`~lorakit.data.e2e_names`);
* :mod:`lorakit.data.lexicon`: E2E's slot values and the regular expressions that find them in a
  text, for the slot error rate;
* :mod:`lorakit.data.template`: the template and retrieval baselines;
* :mod:`lorakit.data.stats`: the set's statistics and ``MANIFEST.json``;
* :mod:`lorakit.data.e2e_load`: reading and writing the JSONL set and the real E2E CSVs;
* :mod:`lorakit.data.sources`: which data a split comes from (synthetic, real, a folder);
* :mod:`lorakit.data.splits`: ``load_e2e`` (a split's records from a source), ``domain_text``;
* :mod:`lorakit.data.collate`: (MR, reference) pairs -> length-bucketed batches for
  :func:`lorakit.train.train`, and left-padded prompts for decoding.

``python -m lorakit.data generate --out data/e2e`` regenerates the shipped set byte for byte;
``python -m lorakit.data stats data/e2e`` adds the baselines' scores to its MANIFEST.
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
from lorakit.data.e2e_generate import generate_splits, realise
from lorakit.data.e2e_load import (
    DATA_DIR,
    E2E_CSV,
    SPLITS,
    DataFileError,
    read_e2e_csv,
    read_jsonl,
    write_jsonl,
)
from lorakit.data.lexicon import VALUES, find_values, slot_error_rate, slot_errors
from lorakit.data.records import SLOTS, E2ERecord, format_mr, parse_mr
from lorakit.data.splits import domain_text, load_e2e
from lorakit.data.stats import data_stats, sha256, write_manifest
from lorakit.data.template import retrieval_texts, template_text, template_texts

__all__ = [
    "DATA_DIR",
    "E2E_CSV",
    "IGNORE_INDEX",
    "SEPARATOR",
    "SLOTS",
    "SPLITS",
    "VALUES",
    "DataFileError",
    "E2ERecord",
    "Example",
    "LengthBucketBatches",
    "collate",
    "data_stats",
    "domain_text",
    "find_values",
    "format_mr",
    "generate_splits",
    "load_e2e",
    "make_batches",
    "make_examples",
    "pad_id_of",
    "parse_mr",
    "prompt_batches",
    "prompt_text",
    "read_e2e_csv",
    "read_jsonl",
    "realise",
    "retrieval_texts",
    "sha256",
    "slot_error_rate",
    "slot_errors",
    "template_text",
    "template_texts",
    "write_jsonl",
    "write_manifest",
]
