"""Build the course as a static web book.

One page per chapter notebook found in ``chapters/`` (exported with nbconvert from the stored
outputs; nothing is executed), a landing page made of the README's front matter, and one page per
``lorakit`` module that the README's chapter table names. MathJax and every style sheet are copied
into the build, so the book reads offline, from ``file://`` or any static web server.
"""

from __future__ import annotations

import html
import importlib.util
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import nbformat

from . import modules as mod
from .prepare import for_the_web, lost_backslashes

BOOK_DIR = Path(__file__).resolve().parent
ROOT = BOOK_DIR.parent
TEMPLATES = BOOK_DIR / "templates"
MATHJAX_CONFIG = "config/TeX-AMS-MML_HTMLorMML-full.js"

# NN_topic.ipynb in reading order; a capital letter first marks an appendix (A1_topic.ipynb).
_CHAPTER_FILE = re.compile(r"^(?P<letter>[A-Z]?)(?P<number>\d+)_\w+\.ipynb$")
_README_ROW = re.compile(r"^\|\s*\[[^\]]*\]\(chapters/(?P<file>[^)]+\.ipynb)\)")
_PIPE = re.compile(r"(?<!\\)\|")
_LINK = re.compile(r"\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)\)")


class BookError(RuntimeError):
    """Something in the course's sources that stops the build; the message says what to fix."""


@dataclass
class Chapter:
    """One chapter notebook: its file, its title (the first ``# `` heading), its modules."""

    path: Path
    title: str
    modules: list[str] = field(default_factory=list)

    @property
    def page(self) -> str:
        return self.path.stem + ".html"


@dataclass
class Book:
    """What :func:`build_book` wrote: the folder, its pages, the chapters and any warnings."""

    out: Path
    pages: list[Path]
    chapters: list[Chapter]
    modules: list[str]
    warnings: list[str]

    @property
    def index(self) -> Path:
        return self.out / "index.html"


def discover_chapters(chapters_dir: Path) -> list[Path]:
    """Every ``NN_topic.ipynb`` (and appendix ``A1_topic.ipynb``) in ``chapters_dir``, in reading
    order: numbered chapters by number, then appendices by letter and number."""
    found = [p for p in Path(chapters_dir).glob("*.ipynb") if _CHAPTER_FILE.match(p.name)]
    if not found:
        raise BookError(f"no chapter notebooks (NN_topic.ipynb) in {chapters_dir}")

    def key(p: Path) -> tuple[str, int, str]:
        m = _CHAPTER_FILE.match(p.name)
        assert m is not None
        return m.group("letter"), int(m.group("number")), p.name

    return sorted(found, key=key)


def chapter_title(nb: nbformat.NotebookNode, fallback: str) -> str:
    """The text of the first level-1 heading in the notebook's markdown, else ``fallback``."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def readme_modules(readme: str) -> dict[str, list[str]]:
    """``{"01_rank": ["linalg"], ...}``: the lorakit modules column of the README's chapter table."""
    table = {}
    for line in readme.splitlines():
        m = _README_ROW.match(line)
        if m:
            cells = _PIPE.split(line)
            column = cells[3] if len(cells) > 3 else ""
            table[Path(m.group("file")).stem] = re.findall(r"`([A-Za-z_][\w.]*)`", column)
    return table


def front_matter(readme: str, pages: set[str]) -> str:
    """The README up to the end of the section that holds the chapter table, as Markdown for the
    landing page: chapter links point at their pages, module names at theirs, and links to other
    files of the repository are left as plain text (they are not part of the book)."""
    lines = readme.splitlines()
    row = next((i for i, line in enumerate(lines) if _README_ROW.match(line)), None)
    end = len(lines)
    if row is not None:
        end = next((i for i in range(row, len(lines)) if lines[i].startswith("## ")), len(lines))
    kept = []
    for line in lines[:end]:
        if _README_ROW.match(line):
            cells = _PIPE.split(line)
            if len(cells) > 3:
                cells[3] = re.sub(r"`([A-Za-z_][\w.]*)`", lambda m: f"[`{m.group(1)}`]"
                                  f"({mod.page_name(m.group(1))})"
                                  if mod.page_name(m.group(1)) in pages else m.group(0), cells[3])
            line = "|".join(cells)
        kept.append(_LINK.sub(lambda m: _landing_link(m, pages), line))
    return "\n".join(kept).strip() + "\n"


def _landing_link(m: re.Match, pages: set[str]) -> str:
    target = m.group("target")
    if target.startswith("chapters/") and target.endswith(".ipynb"):
        target = Path(target).stem + ".html"
    if re.match(r"^(\w+:|#)", target) or target.split("#")[0] in pages:
        return f"[{m.group('text')}]({target})"
    return m.group("text")


def _nav(chapters: list[Chapter], modules: list[str], current: str) -> str:
    def item(page: str, text: str) -> str:
        cls = ' class="current"' if page == current else ""
        return f'<li{cls}><a href="{page}">{html.escape(text)}</a></li>'

    items = "".join(item(c.page, c.title) for c in chapters)
    mods = "".join(item(mod.page_name(m), f"lorakit.{m}") for m in modules)
    return (f'<nav class="book-toc" aria-label="Contents"><a class="book-home" href="index.html">'
            f'lorakit — the course</a><p class="book-toc-head">Chapters</p><ol>{items}</ol>'
            f'<p class="book-toc-head">lorakit modules</p><ul>{mods}</ul></nav>')


def _pager(prev: tuple[str, str] | None, nxt: tuple[str, str] | None, where: str) -> str:
    links = ""
    if prev:
        links += f'<a rel="prev" href="{prev[0]}">← {html.escape(prev[1])}</a>'
    if nxt:
        links += f'<a rel="next" href="{nxt[0]}">{html.escape(nxt[1])} →</a>'
    return f'<nav class="book-pager book-pager-{where}" aria-label="Previous and next">{links}</nav>'


def _chapter_meta(chapter: Chapter, pages: set[str]) -> str:
    links = [f'<a href="{mod.page_name(m)}"><code>lorakit.{m}</code></a>'
             for m in chapter.modules if mod.page_name(m) in pages]
    used = f"lorakit modules in this chapter: {', '.join(links)}. " if links else ""
    return (f'<p class="book-meta">{used}<a href="notebooks/{chapter.path.name}">'
            f"Download the notebook</a> (run it in JupyterLab: <code>make lab</code>). Outputs "
            "shown here are the ones stored in the notebook.</p>")


def mathjax_source() -> Path:
    """Folder of the MathJax 2.7 files shipped by the ``jupyter-server-mathjax`` package."""
    spec = importlib.util.find_spec("jupyter_server_mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise BookError("MathJax is missing: the book serves its math from the "
                        "jupyter-server-mathjax package. Install it with `make book` or "
                        "`pip install 'jupyter-server-mathjax>=0.2.6'`.")
    static = Path(spec.submodule_search_locations[0]) / "static"
    if not (static / MATHJAX_CONFIG).is_file():
        raise BookError(f"{static} has no {MATHJAX_CONFIG}: reinstall jupyter-server-mathjax")
    return static


def _copy_static(out: Path) -> None:
    static = out / "_static"
    static.mkdir(parents=True, exist_ok=True)
    for path in (BOOK_DIR / "static").iterdir():
        shutil.copy2(path, static / path.name)
    (static / "pygments.css").write_text(mod.pygments_css(), encoding="utf-8")
    source, target = mathjax_source(), static / "mathjax"
    marker = target / "MathJax.js"
    if not marker.is_file() or marker.stat().st_size != (source / "MathJax.js").stat().st_size:
        shutil.rmtree(target, ignore_errors=True)
        # Only the English strings: MathJax reads no other locale unless a reader picks one.
        shutil.copytree(source, target, ignore=lambda d, names: {
            n for n in names if Path(d).name == "localization" and n != "en"})


def _exporter():
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="book", extra_template_basedirs=[str(TEMPLATES)])
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    return exporter


def build_book(out: Path | str = "build/book", chapters_dir: Path | str | None = None,
               readme: Path | str | None = None, root: Path | str | None = None) -> Book:
    """Write the web book into ``out``.

    Parameters
    ----------
    out : path
        The folder to write (created; pages in it are overwritten, and pages an earlier build
        wrote that this one does not are removed).
    chapters_dir, readme, root : path, optional
        The chapter notebooks, the README and the repository root (for ``lorakit/``); by default
        those of this checkout.

    Returns
    -------
    Book
        The pages written, the chapters in reading order, the module pages and any warnings
        (a chapter missing from the README's table, a module named there that does not exist).

    Raises
    ------
    BookError
        No chapters, MathJax not installed, or a markdown cell with a control character where a
        LaTeX backslash was lost (``\\t`` from ``\\top``): the message names chapter and cell.
    """
    root = Path(root) if root else ROOT
    chapters_dir = Path(chapters_dir) if chapters_dir else root / "chapters"
    readme_text = Path(readme or root / "README.md").read_text(encoding="utf-8")
    out = Path(out)
    warnings: list[str] = []
    table = readme_modules(readme_text)

    notebooks, chapters, problems = {}, [], []
    for path in discover_chapters(chapters_dir):
        nb = nbformat.read(path, as_version=4)
        problems += [f"{path.name} {p}" for p in lost_backslashes(nb)]
        notebooks[path] = nb
        if path.stem not in table:
            warnings.append(f"{path.name} is not in the README's chapter table: its page links to "
                            "no lorakit module (add its row to the table)")
        chapters.append(Chapter(path, chapter_title(nb, path.stem), table.get(path.stem, [])))
    if problems:
        raise BookError("math that cannot render as written (write these cells' text with a raw "
                        "string, r'...', or fix the characters):\n  " + "\n  ".join(problems))

    modules = sorted({m for c in chapters for m in c.modules})
    for name in [m for m in modules if not mod.module_files(m, root)]:
        warnings.append(f"the README's chapter table names lorakit.{name}, which does not exist")
        modules.remove(name)

    out.mkdir(parents=True, exist_ok=True)
    _copy_static(out)
    (out / "notebooks").mkdir(exist_ok=True)
    pages_set = {c.page for c in chapters} | {mod.page_name(m) for m in modules} | {"index.html"}
    exporter, written = _exporter(), []

    def export(nb: nbformat.NotebookNode, page: str, title: str, head: str, pager: str) -> None:
        nb.metadata["title"] = title
        book = {"nav_html": _nav(chapters, modules, page), "head_html": head, "pager_html": pager}
        body, _ = exporter.from_notebook_node(nb, resources={"book": book})
        (out / page).write_text(body, encoding="utf-8")
        written.append(out / page)

    title = next((line[2:] for line in readme_text.splitlines() if line.startswith("# ")), "lorakit")
    landing = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        front_matter(readme_text, pages_set))])
    first = (chapters[0].page, chapters[0].title)
    export(landing, "index.html", title, _pager(None, first, "top"), _pager(None, first, "bottom"))

    for i, ch in enumerate(chapters):
        prev = (chapters[i - 1].page, chapters[i - 1].title) if i else ("index.html", title)
        nxt = (chapters[i + 1].page, chapters[i + 1].title) if i + 1 < len(chapters) else None
        shutil.copy2(ch.path, out / "notebooks" / ch.path.name)
        head = _pager(prev, nxt, "top") + _chapter_meta(ch, pages_set)
        export(for_the_web(notebooks[ch.path]), ch.page, ch.title, head,
               _pager(prev, nxt, "bottom"))

    page_template = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES)).get_template(
        "page.html.j2")
    for name in modules:
        used_by = [(c.page, c.title) for c in chapters if name in c.modules]
        page = mod.page_name(name)
        (out / page).write_text(page_template.render(
            title=f"lorakit.{name}", nav_html=_nav(chapters, modules, page), head_html="",
            body_html=mod.render_module(name, root, used_by), pager_html=""), encoding="utf-8")
        written.append(out / page)
    _forget_stale(out, written + [out / "notebooks" / c.path.name for c in chapters])
    return Book(out, written, chapters, modules, warnings)


def _forget_stale(out: Path, files: list[Path]) -> None:
    """Remove files an earlier build wrote and this one did not (a renamed chapter's page), as
    listed in ``out/.book-files``; nothing else in ``out`` is touched."""
    manifest = out / ".book-files"
    now = {f.relative_to(out).as_posix() for f in files}
    before = manifest.read_text(encoding="utf-8").split() if manifest.is_file() else []
    for name in set(before) - now:
        (out / name).unlink(missing_ok=True)
    manifest.write_text("\n".join(sorted(now)) + "\n", encoding="utf-8")
