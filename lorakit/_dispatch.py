"""``python -m lorakit.experiments NAME`` / ``python -m lorakit.bench NAME``: find and run a
submodule."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from types import ModuleType


def available(package: ModuleType) -> list[str]:
    """Names of the runnable submodules of ``package`` (shown with dashes)."""
    return sorted(
        m.name.replace("_", "-")
        for m in pkgutil.iter_modules(package.__path__)
        if not m.name.startswith("_")
    )


def run(package: ModuleType, argv: list[str] | None = None) -> None:
    """Run ``package.NAME.main(rest_of_argv)`` for ``argv = [NAME, *rest]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = f"python -m {package.__name__}"
    names = available(package)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} NAME [options]\n\nNAME is one of: {', '.join(names)}")
        raise SystemExit(0 if argv else 2)
    name = argv[0]
    if name not in names:
        print(f"{prog}: unknown name {name!r}; choose one of: {', '.join(names)}", file=sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(f"{package.__name__}.{name.replace('-', '_')}")
    module.main(argv[1:])
