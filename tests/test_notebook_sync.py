"""Code a notebook defines and lorakit also holds must be the same code.

A notebook cell whose first line is ``# sync: lorakit.module.name`` must define ``name``
(a function or class) exactly as lorakit does; nbgrader's solution markers are ignored.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import textwrap
from pathlib import Path

import pytest

CHAPTERS = Path(__file__).resolve().parent.parent / "chapters"
MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")


def sync_cells() -> list[tuple[str, int, str, str]]:
    """``(notebook, cell index, dotted target, cell source)`` for every ``# sync:`` cell."""
    found = []
    for nb_path in sorted(CHAPTERS.glob("*.ipynb")):
        nb = json.loads(nb_path.read_text())
        for i, cell in enumerate(nb["cells"]):
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            first = src.lstrip().splitlines()[0] if src.strip() else ""
            if cell["cell_type"] == "code" and first.startswith("# sync:"):
                found.append((nb_path.name, i, first.split(":", 1)[1].strip(), src))
    return found


def _definition(source: str, name: str) -> str:
    lines = [ln for ln in source.splitlines() if ln.strip() not in MARKERS]
    tree = ast.parse(textwrap.dedent("\n".join(lines)))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            return ast.dump(node, include_attributes=False)
    raise AssertionError(f"no def/class named {name!r} in the cell")


def same_code(cell_source: str, dotted: str) -> bool:
    module_name, _, name = dotted.rpartition(".")
    obj = getattr(importlib.import_module(module_name), name)
    return _definition(cell_source, name) == _definition(inspect.getsource(obj), name)


@pytest.mark.parametrize(
    "notebook,cell,target,source",
    sync_cells()
    or [pytest.param(None, None, None, None, marks=pytest.mark.skip("no sync cells yet"))],
)
def test_notebook_code_is_lorakit_code(notebook, cell, target, source):
    assert same_code(source, target), (
        f"{notebook} cell {cell} defines {target} differently from lorakit: edit both together"
    )


def test_the_comparison_catches_a_difference():
    src = inspect.getsource(importlib.import_module("lorakit.lora.layers").lora_scaling)
    assert same_code(
        "# sync: lorakit.lora.layers.lora_scaling\n" + src, "lorakit.lora.layers.lora_scaling"
    )
    changed = src.replace("alpha / r", "alpha / (r + 1)")
    assert changed != src
    assert not same_code(changed, "lorakit.lora.layers.lora_scaling")
    with_markers = src.replace("    if rslora", "    ### BEGIN SOLUTION\n    if rslora", 1)
    assert same_code(with_markers, "lorakit.lora.layers.lora_scaling")
