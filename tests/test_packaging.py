"""The set-up stays honest: one dependency list, a core that needs only torch, numpy and
safetensors, the same install from make and conda, CI runs the README's command."""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
CORE = {"torch", "numpy", "safetensors"}
# imported inside ``try: ... except ImportError`` with a fallback, so never required
OPTIONAL_IMPORTS = {"datasets", "huggingface_hub"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;(]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _closure(names) -> set[str]:
    """The installed distributions ``names`` need, themselves included (extras not followed)."""
    seen, todo = set(), [_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        seen.add(name)
        todo += [_name(r) for r in dist.requires or [] if "extra ==" not in r]
    return seen


def _declared(extras: list[str]) -> set[str]:
    """The distributions pyproject.toml declares for the core plus ``extras`` (self-references
    such as ``lorakit[hf]`` followed)."""
    project = _project()
    out, todo = {_name(r) for r in project["dependencies"]}, list(extras)
    while todo:
        for req in project["optional-dependencies"][todo.pop()]:
            if _name(req) == "lorakit":
                todo += re.search(r"\[(.*)\]", req).group(1).split(",")
            else:
                out.add(_name(req))
    return out


def test_the_core_needs_only_torch_numpy_and_safetensors():
    project = _project()
    assert {_name(r) for r in project["dependencies"]} == CORE
    extras = project["optional-dependencies"]
    assert {"hf", "course", "peft", "triton", "dev", "all"} <= set(extras)
    assert _declared(["all"]) == _declared([e for e in extras if e not in ("all", "triton")])
    for tool in ("jupyterlab", "pytest", "nbval", "ruff", "transformers", "matplotlib", "tqdm"):
        assert tool not in _declared([]) and tool in _declared(["all"])


def test_make_and_conda_install_the_same_extras():
    makefile = (ROOT / "Makefile").read_text()
    installs = re.findall(r"pip install --quiet -e \"?\.(\[[\w,]+\])?\"?", makefile)
    assert installs == ["[all]"], installs
    assert makefile.index("$(TORCH_SPEC)") < makefile.index('-e ".[all]"')  # torch pinned first
    yml = (ROOT / "environment.yml").read_text()
    pip = [
        line.strip()[2:]
        for line in yml.split("- pip:", 1)[1].splitlines()
        if line.strip().startswith("- ")
    ]
    assert pip[-1] == "-e .[all]"
    bounds = {_name(r): r for r in _project()["dependencies"]}
    for req in pip[:-1]:  # anything listed beside it is a core dependency with the same bound
        assert bounds.get(_name(req)) == req, (
            f"{req} in environment.yml differs from pyproject.toml"
        )


def _third_party_imports() -> dict[str, str]:
    """``{top-level module: a file importing it}`` for every non-stdlib import in lorakit/."""
    found = {}
    for path in sorted((ROOT / "lorakit").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "lorakit":
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_package_lorakit_imports_is_declared():
    """Declared by name in pyproject.toml, not merely pulled in by another package."""
    missing = [m for m in ("transformers", "nbclient") if not _installed(m)]
    if missing:
        pytest.skip(f"needs the [all] install ({', '.join(missing)} missing)")
    provided = md.packages_distributions()
    declared = _declared(["all", "triton"])
    undeclared = {}
    for module, where in _third_party_imports().items():
        dists = {_name(d) for d in provided.get(module, [module])}  # not installed: its own name
        if module not in OPTIONAL_IMPORTS and not dists & declared:
            undeclared[module] = where
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def _installed(module: str) -> bool:
    return module in md.packages_distributions()


def _core_only_site(folder: Path) -> Path:
    """A site-packages holding only the core and what it needs: links to the installed files."""
    folder.mkdir()
    for dist_name in _closure(CORE):
        dist = md.distribution(dist_name)
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] != ".."}:
            source = Path(dist.locate_file(top))
            if source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)
    return folder


# Run in a Python that sees only the core's packages (no site-packages, ``-S``): an import of
# transformers, tqdm, matplotlib, ... anywhere on the way fails as it would after
# `pip install lorakit` without extras. No network: the installed files are linked, not fetched.
_CORE_ONLY = textwrap.dedent("""
    import sys, tempfile
    import torch
    from torch import nn
    import lorakit
    from lorakit.lora.fast import set_fast_path

    def mlp():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4), nn.Embedding(10, 8))

    model = mlp()
    report = lorakit.apply_lora(model, lorakit.LoRAConfig(r=2, alpha=4, targets=["0", "2", "3"]))
    assert report.trainable == 2 * (8 + 16) + 2 * (16 + 4) + 2 * (10 + 8), report.trainable
    x, ids = torch.randn(5, 8), torch.tensor([1, 2, 3])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        (model[:3](x).pow(2).mean() + model[3](ids).pow(2).mean()).backward()
        opt.step()
    model.eval()
    before, table = model[:3](x), model[3](ids)
    set_fast_path(model, True)
    torch.testing.assert_close(model[:3](x), before)
    lorakit.merge_lora(model)
    torch.testing.assert_close(model[:3](x), before, rtol=1e-5, atol=1e-5)
    lorakit.unmerge_lora(model)
    with tempfile.TemporaryDirectory() as tmp:
        lorakit.save_adapter(model, tmp)
        fresh = lorakit.load_adapter(mlp(), tmp)
    torch.testing.assert_close(fresh[:3](x), before)
    torch.testing.assert_close(fresh[3](ids), table)
    from lorakit.train import load_trainable, save_trainable, train  # the loop imports too
    with tempfile.TemporaryDirectory() as tmp:
        save_trainable(model, f"{tmp}/t.safetensors")
        load_trainable(fresh, f"{tmp}/t.safetensors")
    for name in ("transformers", "tqdm", "matplotlib"):
        try:
            __import__(name)
        except ModuleNotFoundError:
            continue
        raise AssertionError(f"{name} is importable: the environment is not core-only")
    print("core ok")
""")


def test_import_lorakit_and_the_lora_core_work_with_only_the_core_dependencies(tmp_path):
    site = _core_only_site(tmp_path / "site")
    env = {
        "PYTHONPATH": f"{ROOT}{os.pathsep}{site}",
        "PYTHONNOUSERSITE": "1",
        "HOME": str(tmp_path),
        "PATH": os.environ.get("PATH", ""),
    }
    out = subprocess.run(
        [sys.executable, "-S", "-c", _CORE_ONLY],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "core ok" in out.stdout


def test_import_lorakit_does_not_load_transformers_or_matplotlib():
    code = (
        "import sys, lorakit; print(sorted(m for m in ('transformers', 'matplotlib', "
        "'tokenizers', 'sacrebleu', 'nbformat', 'peft') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]"


def test_the_version_is_written_once():
    import lorakit
    from lorakit._version import __version__

    assert lorakit.__version__ == __version__
    assert "version" in _project()["dynamic"] and "version" not in _project()
    text = (ROOT / "pyproject.toml").read_text()
    assert 'attr = "lorakit._version.__version__"' in text
    hits = [
        p
        for p in (ROOT / "lorakit").rglob("*.py")
        if re.search(r"^__version__\s*=", p.read_text(encoding="utf-8"), re.M)
    ]
    assert [p.name for p in hits] == ["_version.py"]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    assert commands[-1].strip() == "make test"


def test_make_test_lints_then_runs_the_suite_in_the_ci_preset_offline():
    makefile = (ROOT / "Makefile").read_text()
    test_rule = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "LORAKIT_PRESET=ci" in test_rule and "HF_HUB_OFFLINE=1" in test_rule
    steps = [line.strip() for line in test_rule.splitlines()[1:]]
    assert steps[0].endswith("ruff check lorakit tests")
    assert steps[1].endswith("ruff format --check lorakit tests")
    assert steps[-1].endswith("-m pytest")


def test_every_phony_target_has_a_rule():
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.M).group(1).split()
    rules = set(re.findall(r"^([\w-]+):", makefile, re.M))
    assert set(phony) <= rules, f".PHONY names targets without a rule: {set(phony) - rules}"


def test_every_chapter_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    for nb in sorted((ROOT / "chapters").glob("*.ipynb")):
        assert nb.name in readme, f"{nb.name} is missing from the README's chapter table"


CORE_MODULES = (
    "lora",
    "train",
    "checkpoint.py",
    "adapter_meta.py",
    "fileio.py",
    "presets.py",
    "cli.py",
    "_version.py",
    "__init__.py",
)
ABOVE_THE_CORE = (
    "models",
    "data",
    "baselines",
    "evaluate",
    "analysis",
    "experiments",
    "bench",
    "exercises",
    "runs",
)


def _imported_names(file: Path) -> list[str]:
    """Every module ``file`` imports, relative imports resolved (function-local ones included)."""
    package = file.relative_to(ROOT).parent.parts  # e.g. ("lorakit", "lora")
    names = []
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            names += [module] + [f"{module}.{a.name}" for a in node.names]
    return names


def test_the_core_imports_nothing_above_it():
    """docs/architecture.md's layering: the LoRA core never imports the paper's reproduction or
    the course machinery (function-local imports included)."""
    wrong = []
    for entry in CORE_MODULES:
        path = ROOT / "lorakit" / entry
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            for name in _imported_names(file):
                parts = name.split(".")
                if parts[0] == "lorakit" and len(parts) > 1 and parts[1] in ABOVE_THE_CORE:
                    wrong.append(f"{file.relative_to(ROOT)} imports {name}")
    assert not wrong, wrong
    lora_apply = _imported_names(ROOT / "lorakit" / "lora" / "apply.py")
    assert "lorakit.lora.layers" in lora_apply and "lorakit.lora.config.LoRAConfig" in lora_apply
