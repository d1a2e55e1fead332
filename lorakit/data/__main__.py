"""``python -m lorakit.data generate --out data/e2e``: (re)generate the synthetic E2E-style set."""

from __future__ import annotations

import argparse
from pathlib import Path

from lorakit.data.e2e_generate import generate_splits
from lorakit.data.e2e_load import write_jsonl
from lorakit.data.stats import write_manifest

DEFAULT_SEED = 2017
DEFAULT_SIZES = {"train": 4800, "dev": 500, "test": 600}


def generate(out: str | Path, seed: int = DEFAULT_SEED, sizes: dict[str, int] | None = None,
             manifest: bool = True) -> list[Path]:
    """Write ``{train,dev,test}.jsonl`` (and ``MANIFEST.json``) into ``out``; return the paths."""
    sizes = sizes or DEFAULT_SIZES
    out = Path(out)
    paths = [write_jsonl(records, out / f"{split}.jsonl")
             for split, records in generate_splits(sizes, seed=seed).items()]
    if manifest:
        command = "python -m lorakit.data generate --out data/e2e"
        if seed != DEFAULT_SEED or sizes != DEFAULT_SIZES:
            command += f" --seed {seed} --sizes {sizes['train']} {sizes['dev']} {sizes['test']}"
        paths.append(write_manifest(out, seed, command))
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lorakit.data")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write the synthetic E2E-style set as JSONL")
    gen.add_argument("--out", default="data/e2e", help="output folder (default data/e2e)")
    gen.add_argument("--seed", type=int, default=DEFAULT_SEED)
    gen.add_argument("--sizes", type=int, nargs=3, metavar=("TRAIN", "DEV", "TEST"),
                     default=[DEFAULT_SIZES[s] for s in ("train", "dev", "test")],
                     help="MRs per split (default: E2E's 4800 500 600)")
    args = parser.parse_args(argv)
    sizes = dict(zip(("train", "dev", "test"), args.sizes))
    for path in generate(args.out, seed=args.seed, sizes=sizes):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
