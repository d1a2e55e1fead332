"""``python -m lorakit.data``: (re)generate the synthetic E2E-style set and its statistics.

* ``generate --out data/e2e``: write ``{train,dev,test}.jsonl`` and ``MANIFEST.json`` (seed,
  sizes, SHA-256 of each file, and the data statistics); byte for byte the same on every run;
* ``stats data/e2e``: add the test scores of the baselines (template, retrieval, the references
  themselves, the generator's oracle) to the MANIFEST and print them (about half a minute).

The shipped set is ``generate --out data/e2e`` followed by ``stats data/e2e``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lorakit.cli import nonnegative_int, positive_int
from lorakit.data.e2e_generate import DEFAULT_SIZES, generate_splits
from lorakit.data.e2e_load import write_jsonl
from lorakit.data.stats import add_baselines, write_manifest

DEFAULT_SEED = 2017


def generate(
    out: str | Path,
    seed: int = DEFAULT_SEED,
    sizes: dict[str, int] | None = None,
    manifest: bool = True,
) -> list[Path]:
    """Write ``{train,dev,test}.jsonl`` (and ``MANIFEST.json``) into ``out``; return the paths."""
    sizes = sizes or DEFAULT_SIZES
    out = Path(out)
    paths = [
        write_jsonl(records, out / f"{split}.jsonl")
        for split, records in generate_splits(sizes, seed=seed).items()
    ]
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
    gen.add_argument(
        "--sizes",
        type=nonnegative_int,
        nargs=3,
        metavar=("TRAIN", "DEV", "TEST"),
        default=[DEFAULT_SIZES[s] for s in ("train", "dev", "test")],
        help="MRs per split (default %(default)s: about E2E's references at 8.5 references per MR)",
    )
    st = sub.add_parser("stats", help="add the baselines' test scores to a set's MANIFEST")
    st.add_argument("dir", nargs="?", default="data/e2e", help="the set's folder")
    st.add_argument(
        "--oracle-samples",
        type=positive_int,
        default=100,
        help="texts drawn per MR for the oracle (default 100)",
    )
    args = parser.parse_args(argv)
    if args.command == "generate":
        sizes = dict(zip(("train", "dev", "test"), args.sizes))
        for path in generate(args.out, seed=args.seed, sizes=sizes):
            print(f"wrote {path}")
        return
    scores = add_baselines(args.dir, args.oracle_samples)
    print(f"test split of {args.dir}:  BLEU    SER %")
    for name, s in scores.items():
        print(f"  {name:<12} {s['bleu']:>14.2f} {s['ser']:>8.2f}")
    print(f"added to {Path(args.dir) / 'MANIFEST.json'}")


if __name__ == "__main__":
    main()
