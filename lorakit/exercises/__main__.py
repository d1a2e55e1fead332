"""Command line: student versions, grading, and the list of exercises.

::

    python -m lorakit.exercises student chapters/ --out student/
    python -m lorakit.exercises grade returned/*.ipynb --json grades.json [--timeout 600]
        [--preset ci] [--course chapters/ | --course student/lorakit_exercises.json]
        [--kernel python3]
    python -m lorakit.exercises list

Exit codes: 0 when the work was done (whatever the scores), 2 on bad input or a grading set-up
problem (no such kernel, an unreadable course, lorakit's files changed while grading).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 when the work was done, 2 otherwise)."""
    parser = argparse.ArgumentParser(
        prog="python -m lorakit.exercises",
        description="Student versions and grading of the course's exercises.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    st = sub.add_parser("student", help="write student versions of the chapters")
    st.add_argument(
        "sources", nargs="+", help="chapter notebooks or folders of them (e.g. chapters/)"
    )
    st.add_argument("--out", required=True, help="folder for the student versions (e.g. student/)")
    gr = sub.add_parser("grade", help="run returned notebooks and report each exercise")
    gr.add_argument("notebooks", nargs="+", help="returned notebooks (.ipynb)")
    gr.add_argument("--json", help="also write the grades to this JSON file")
    gr.add_argument("--timeout", type=float, default=600, help="seconds per cell (default 600)")
    gr.add_argument("--preset", choices=["ci", "cpu", "gpu"], help="LORAKIT_PRESET for the runs")
    gr.add_argument("--kernel", help="Jupyter kernel name (default python3)")
    gr.add_argument(
        "--course",
        help="where the expected exercises come from: the chapters folder, "
        "or the lorakit_exercises.json written by the student command "
        "(default: the chapters/ of this lorakit's course)",
    )
    sub.add_parser("list", help="list the registered exercises")
    args = parser.parse_args(argv)

    if args.command == "list":
        from lorakit.exercises.core import load_errors, names

        print("\n".join(names()))
        for module, err in load_errors().items():
            print(f"warning: lorakit.exercises.{module} failed to import: {err}", file=sys.stderr)
        return 0
    try:
        if args.command == "student":
            from lorakit.exercises.student import write_student_versions

            written = write_student_versions(args.sources, args.out)
            for path in written:
                print(f"wrote {path}")
            return 0
        from lorakit.exercises.grade import GraderError, format_table, grade, write_json

        if args.timeout <= 0:
            raise ValueError(f"--timeout must be positive, got {args.timeout:g}")
        try:
            results = grade(
                args.notebooks,
                timeout=args.timeout,
                kernel=args.kernel,
                preset=args.preset,
                course=args.course,
            )
        except GraderError as exc:
            if exc.results:
                print(format_table(exc.results))
            raise
        print(format_table(results))
        if args.json:
            write_json(results, args.json)
            print(f"wrote {args.json}")
        return 0
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
