"""``python -m book [--out build/book] [--check [--screenshots DIR]]``: build the web book."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .build import BookError, build_book


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m book", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("build/book"), help="folder to write")
    parser.add_argument("--chapters", type=Path, default=None, help="chapter notebooks' folder")
    parser.add_argument("--readme", type=Path, default=None, help="README with the chapter table")
    parser.add_argument("--check", action="store_true",
                        help="then open every page in headless Chromium and report problems")
    parser.add_argument("--screenshots", type=Path, default=Path("build/book-screenshots"),
                        help="with --check: folder for one screenshot per chapter")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        book = build_book(args.out, chapters_dir=args.chapters, readme=args.readme)
    except BookError as exc:
        print(f"book: {exc}", file=sys.stderr)
        return 1
    for warning in book.warnings:
        print(f"book: warning: {warning}", file=sys.stderr)
    print(f"book: {len(book.chapters)} chapters, {len(book.modules)} module pages in "
          f"{time.perf_counter() - start:.1f} s; open {book.index}")
    if not args.check:
        return 0
    from .browser import BrowserError
    from .check import check_book

    try:
        reports = check_book(book, screenshots=args.screenshots)
    except BrowserError as exc:
        print(f"book: cannot check in a browser: {exc}", file=sys.stderr)
        return 1
    problems = [p for r in reports for p in r.problems()]
    for line in problems:
        print(f"book: {line}", file=sys.stderr)
    print(f"book: checked {len(reports)} pages in Chromium, {len(problems)} problems; "
          f"screenshots in {args.screenshots}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
