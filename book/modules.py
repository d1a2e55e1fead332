"""Pages for the ``lorakit`` modules a chapter uses: docstrings, signatures and the source.

The source is read with :mod:`ast`, never imported, so a page can be built without torch and
without running any of the package's code.
"""

from __future__ import annotations

import ast
import html
from pathlib import Path

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

PACKAGE = "lorakit"


def module_files(name: str, root: Path) -> list[Path]:
    """The source files of ``lorakit.<name>`` (a module, or every file of a package).

    Parameters
    ----------
    name : str
        Dotted name under the package, e.g. ``"linalg"`` or ``"lora.fast"``.
    root : Path
        The repository root (the folder that holds ``lorakit/``).

    Returns
    -------
    list of Path
        ``[lorakit/linalg.py]`` for a module; for a package its ``__init__.py`` first, then every
        other ``.py`` file below it in path order; empty when no such module exists.
    """
    base = root / PACKAGE / Path(*name.split("."))
    if base.with_suffix(".py").is_file():
        return [base.with_suffix(".py")]
    if (base / "__init__.py").is_file():
        rest = sorted(p for p in base.rglob("*.py") if p != base / "__init__.py")
        return [base / "__init__.py", *rest]
    return []


def page_name(name: str) -> str:
    """File name of the page of ``lorakit.<name>``: ``lorakit.linalg.html``."""
    return f"{PACKAGE}.{name}.html"


def _signature(node: ast.AST) -> str:
    if isinstance(node, ast.ClassDef):
        bases = [ast.unparse(b) for b in node.bases]
        return f"class {node.name}" + (f"({', '.join(bases)})" if bases else "")
    assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    return f"{prefix} {node.name}({ast.unparse(node.args)}){returns}"


def _exported(tree: ast.Module) -> set[str] | None:
    """Names in the file's ``__all__``, when it sets one as a literal list or tuple."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            try:
                return set(ast.literal_eval(node.value))
            except ValueError:
                return None
    return None


def _public(nodes: list[ast.stmt], exported: set[str] | None = None) -> list[ast.AST]:
    defs = [n for n in nodes if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
    if exported is not None:
        return [n for n in defs if n.name in exported]
    return [n for n in defs if not n.name.startswith("_") or n.name == "__init__"]


def _doc(node: ast.AST) -> str:
    text = ast.get_docstring(node)  # type: ignore[arg-type]
    return f'<pre class="book-doc">{html.escape(text)}</pre>' if text else ""


def _api(tree: ast.Module, anchor: str) -> str:
    items = []
    for node in _public(tree.body, _exported(tree)):
        ident = f"{anchor}.{node.name}"
        inner = ""
        if isinstance(node, ast.ClassDef):
            methods = [m for m in _public(node.body) if m.name != "__init__" or ast.get_docstring(m)]
            inner = "".join(f"<dt><code>{html.escape(_signature(m))}</code></dt><dd>{_doc(m)}</dd>"
                            for m in methods)
            inner = f'<dl class="book-methods">{inner}</dl>' if inner else ""
        items.append(f'<dt id="{html.escape(ident)}"><code>{html.escape(_signature(node))}</code>'
                     f"</dt><dd>{_doc(node)}{inner}</dd>")
    return f'<dl class="book-api">{"".join(items)}</dl>' if items else ""


def render_module(name: str, root: Path, used_by: list[tuple[str, str]]) -> str:
    """HTML body of the page of ``lorakit.<name>``.

    Parameters
    ----------
    name : str
        Dotted name under the package, e.g. ``"lora.fast"``.
    root : Path
        The repository root.
    used_by : list of (page, title)
        The chapters that use this module, linked at the top of the page.

    Returns
    -------
    str
        For each source file: its docstring, its public classes and functions with their
        signatures and docstrings, and the highlighted source in a collapsed block.
    """
    files = module_files(name, root)
    if not files:
        raise FileNotFoundError(f"{PACKAGE}.{name}: no {PACKAGE}/{name.replace('.', '/')}.py "
                                "and no package of that name")
    formatter = HtmlFormatter(cssclass="highlight", linenos="table")
    links = ", ".join(f'<a href="{html.escape(p)}">{html.escape(t)}</a>' for p, t in used_by)
    out = [f'<h1><code>{PACKAGE}.{html.escape(name)}</code></h1>']
    if links:
        out.append(f'<p class="book-used-by">Used in: {links}.</p>')
    for path in files:
        rel = path.relative_to(root).as_posix()
        source = path.read_text(encoding="utf-8")
        try:
            tree = ast.parse(source, filename=rel)
        except SyntaxError as exc:
            raise SyntaxError(f"{rel} does not parse, so its page cannot be built: {exc}") from exc
        dotted = rel[: -len(".py")].replace("/", ".").removesuffix(".__init__")
        n_lines = source.count("\n") + (not source.endswith("\n"))
        out.append(
            f'<section class="book-module-file" id="{html.escape(dotted)}">'
            f"<h2><code>{html.escape(rel)}</code></h2>{_doc(tree)}{_api(tree, dotted)}"
            f"<details><summary>Source of <code>{html.escape(rel)}</code> ({n_lines} lines)"
            f"</summary>{highlight(source, PythonLexer(), formatter)}</details></section>")
    return "\n".join(out)


def pygments_css() -> str:
    """The style sheet for highlighted source on module pages."""
    return HtmlFormatter(cssclass="highlight").get_style_defs(".highlight")
