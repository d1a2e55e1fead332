"""The set-up stays honest: one dependency list in two files, CI runs the README's command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    yml = (ROOT / "environment.yml").read_text()
    pip_block = yml.split("- pip:", 1)[1]
    conda = [line.strip()[2:] for line in pip_block.splitlines() if line.strip().startswith("- ")]
    conda = [c for c in conda if not c.startswith("-e")]
    assert sorted(map(_name, deps)) == sorted(map(_name, conda))
    assert sorted(deps) == sorted(conda), "version bounds differ between pyproject.toml and environment.yml"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    assert commands[-1].strip() == "make test"


def test_make_test_uses_ci_preset_offline():
    makefile = (ROOT / "Makefile").read_text()
    test_rule = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "LORAKIT_PRESET=ci" in test_rule and "HF_HUB_OFFLINE=1" in test_rule


def test_every_chapter_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    for nb in sorted((ROOT / "chapters").glob("*.ipynb")):
        assert nb.name in readme, f"{nb.name} is missing from the README's chapter table"
