"""The web book (``make book``): built from the chapters' stored outputs, read in a real browser.

The browser tests open every page in headless Chromium and skip, saying why, where no Chromium
exists (CI's set-up installs Debian's ``chromium`` where it can). Screenshots of each chapter go to
``build/book-screenshots/`` (ignored by git).
"""

from __future__ import annotations

import base64
import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("nbconvert", reason="the book is built with nbconvert (lorakit[course] has it)")

import nbformat  # noqa: E402
from bs4 import BeautifulSoup  # noqa: E402
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output  # noqa: E402

from book.browser import find_browser  # noqa: E402
from book.build import BookError, build_book, discover_chapters, front_matter, readme_modules  # noqa: E402
from book.modules import module_files  # noqa: E402
from book.prepare import STATE_MIME, VIEW_MIME, for_the_web, lost_backslashes, web_links  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "build" / "book-screenshots"
# A 2x2 PNG (red, green, blue, white).
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEklEQVR4nGP4z8DAAMIM/4EAAB/uBfsL2WiL"
    "AAAAAElFTkSuQmCC"
)

needs_mathjax = pytest.mark.skipif(
    importlib.util.find_spec("jupyter_server_mathjax") is None,
    reason="jupyter-server-mathjax is not installed: `make book` installs it (the book serves "
    "MathJax from it)",
)
needs_browser = pytest.mark.skipif(
    find_browser() is None,
    reason="no Chromium on this machine (install Debian's `chromium`, or set BOOK_BROWSER): the "
    "book is not checked in a browser here",
)


def _write_nb(path: Path, *cells, widgets: dict | None = None) -> Path:
    nb = new_notebook(cells=list(cells))
    if widgets:
        nb.metadata["widgets"] = {STATE_MIME: {"state": widgets}}
    nbformat.write(nb, path)
    return path


def _rel(page: str, rel: str) -> list[str]:
    """The targets of a page's links with ``rel`` (previous/next: one at the top, one at the
    end).
    """
    return [a["href"] for a in BeautifulSoup(page, "html.parser").find_all("a", rel=rel)]


def _figure_cell(source: str = "plt.show()") -> nbformat.NotebookNode:
    return new_code_cell(
        source,
        outputs=[new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})],
    )


def _mini_course(tmp: Path, extra_md: str = "") -> tuple[Path, Path]:
    """Three tiny chapters (one with a figure, one an appendix) and a README with their table."""
    chapters = tmp / "chapters"
    chapters.mkdir()
    _write_nb(
        chapters / "01_first.ipynb",
        new_markdown_cell(
            "# Chapter 1 — First\n\nInline $\\Delta W = BA$ and\n$$\\lVert U^\\top W V\\rVert_F$$\n"
            "Next: [chapter 2](02_second.ipynb)." + extra_md
        ),
        _figure_cell(),
    )
    _write_nb(chapters / "02_second.ipynb", new_markdown_cell("# Chapter 2 — Second\n\n$r \\ll d$"))
    _write_nb(chapters / "A1_extra.ipynb", new_markdown_cell("# Appendix A1 — Extra"))
    readme = tmp / "README.md"
    readme.write_text(
        "# Mini course\n\nIntro with a [link to a file](data/x.json).\n\n## Chapters\n\n"
        "| chapter | what | lorakit module |\n| --- | --- | --- |\n"
        "| [01_first.ipynb](chapters/01_first.ipynb) | a \\|b\\| | `linalg` |\n"
        "| [02_second.ipynb](chapters/02_second.ipynb) | c | `lora`, `nope` |\n\n"
        "Closing line of the section.\n\n## Using it\n\nNot on the landing page.\n"
    )
    return chapters, readme


# ----------------------------------------------------------------------------- no browser needed


def test_chapters_are_found_in_the_folder_in_reading_order(tmp_path):
    for name in ("10_many_adapters", "02_svd", "A1_multi_gpu", "00_start", "09_sub", "notes"):
        _write_nb(tmp_path / f"{name}.ipynb")
    names = [p.stem for p in discover_chapters(tmp_path)]
    assert names == ["00_start", "02_svd", "09_sub", "10_many_adapters", "A1_multi_gpu"]
    with pytest.raises(BookError, match="no chapter notebooks"):
        discover_chapters(tmp_path / "missing")


def test_a_latex_command_that_lost_its_backslash_is_found():
    broken = new_notebook(
        cells=[
            new_markdown_cell("ok"),
            new_markdown_cell("$\\lVert U^\top W V\rVert_F$ and $\frac{a}{b}$"),
        ]
    )  # "\t", "\r", "\f": not raw strings
    problems = lost_backslashes(broken)
    assert [p.split(":")[:2] for p in problems] == [
        ["cell 1", " TAB before 'op W V'"],
        ["cell 1", " CR before 'Vert_F$ an'"],
        ["cell 1", " form feed before 'rac{a}{b}$'"],
    ]
    assert "\\top written through a non-raw Python string" in problems[0]
    fine = new_notebook(
        cells=[
            new_markdown_cell(r"$\lVert U^\top W V\rVert_F$ $\frac{a}{b}$"),
            new_markdown_cell("- item\n\t1. indented by a tab\r\nCRLF\n"),
        ]
    )
    assert lost_backslashes(fine) == []


def test_every_chapter_math_is_written_as_meant():
    """Chapter 9's Table 7 note once had \\top and \\rVert turned into a TAB and a CR."""
    for path in discover_chapters(ROOT / "chapters"):
        assert lost_backslashes(nbformat.read(path, as_version=4)) == [], path.name


def test_readme_table_links_every_chapter_to_modules_that_exist():
    table = readme_modules((ROOT / "README.md").read_text(encoding="utf-8"))
    for path in discover_chapters(ROOT / "chapters"):
        assert table.get(path.stem), (
            f"{path.name} has no row (or no lorakit module) in the "
            "README's chapter table; its book page would link to none"
        )
        for name in table[path.stem]:
            assert module_files(name, ROOT), f"README names lorakit.{name} for {path.name}"


def test_front_matter_is_the_readme_up_to_the_chapter_table_section(tmp_path):
    _, readme = _mini_course(tmp_path)
    text = front_matter(readme.read_text(), {"01_first.html", "lorakit.linalg.html"})
    assert text.startswith("# Mini course") and "Closing line of the section." in text
    assert "Using it" not in text
    assert "[01_first.ipynb](01_first.html)" in text and "[`linalg`](lorakit.linalg.html)" in text
    assert "link to a file" in text and "data/x.json" not in text  # not part of the book
    assert "02_second.ipynb" in text and "(02_second.html)" not in text  # no such page given


def test_notebook_links_become_page_links():
    assert (
        web_links("[a](03_x.ipynb) [b](03_x.ipynb#sec) <a href='04_y.ipynb'>")
        == "[a](03_x.html) [b](03_x.html#sec) <a href='04_y.html'>"
    )
    assert web_links("[c](https://e.org/n.ipynb)") == "[c](https://e.org/n.ipynb)"


def test_a_widget_becomes_its_saved_snapshot():
    state = {
        "box": {"state": {"_model_name": "VBoxModel", "children": ["IPY_MODEL_s", "IPY_MODEL_o"]}},
        "s": {
            "state": {
                "_model_name": "IntSliderModel",
                "description": "r",
                "value": 3,
                "min": 0,
                "max": 30,
            }
        },
        "o": {
            "state": {
                "_model_name": "OutputModel",
                "outputs": [
                    {"output_type": "display_data", "data": {"image/png": PNG}, "metadata": {}}
                ],
            }
        },
    }
    view = {
        VIEW_MIME: {"model_id": "box", "version_major": 2, "version_minor": 0},
        "text/plain": "interactive(children=(IntSlider(value=3)...))",
    }
    nb = new_notebook(
        cells=[new_code_cell("interact(f)", outputs=[new_output("display_data", data=view)])]
    )
    nb.metadata["widgets"] = {STATE_MIME: {"state": state}}
    web = for_the_web(nb)
    data = web.cells[0].outputs[0].data
    assert list(data) == ["text/html"] and "widgets" not in web.metadata
    assert "r = 3 (0 to 30)" in data["text/html"] and f"base64,{PNG}" in data["text/html"]
    assert VIEW_MIME in nb.cells[0].outputs[0].data  # the original is untouched
    nb.metadata.clear()
    bare = for_the_web(nb).cells[0].outputs[0].data["text/html"]
    assert "make lab" in bare and "<img" not in bare


@needs_mathjax
def test_build_writes_linked_pages_that_need_no_network(tmp_path):
    chapters, readme = _mini_course(tmp_path)
    book = build_book(tmp_path / "out", chapters_dir=chapters, readme=readme, root=ROOT)
    assert [c.path.stem for c in book.chapters] == ["01_first", "02_second", "A1_extra"]
    assert book.modules == ["linalg", "lora"]
    assert any("lorakit.nope" in w for w in book.warnings)
    assert any("A1_extra.ipynb is not in the README" in w for w in book.warnings)
    out = book.out
    pages = {p.name: p.read_text(encoding="utf-8") for p in out.glob("*.html")}
    assert set(pages) == {
        "index.html",
        "01_first.html",
        "02_second.html",
        "A1_extra.html",
        "lorakit.linalg.html",
        "lorakit.lora.html",
    }
    first, second, last = pages["01_first.html"], pages["02_second.html"], pages["A1_extra.html"]
    assert (
        _rel(first, "prev") == ["index.html"] * 2 and _rel(first, "next") == ["02_second.html"] * 2
    )
    assert _rel(second, "prev") == ["01_first.html"] * 2
    assert _rel(second, "next") == ["A1_extra.html"] * 2 and _rel(last, "next") == []
    assert _rel(pages["index.html"], "next") == ["01_first.html"] * 2
    assert 'href="lorakit.linalg.html"' in first and '<a href="02_second.html">chapter 2' in first
    assert (
        'href="notebooks/01_first.ipynb"' in first and (out / "notebooks/01_first.ipynb").exists()
    )
    assert "def rank_by_elimination(" in pages["lorakit.linalg.html"]
    assert (out / "_static/mathjax/MathJax.js").is_file() and (out / "_static/book.css").is_file()
    for name, text in pages.items():  # nothing is fetched from the network
        assert not re.search(r"<script[^>]+src=[\"']?(https?:)?//", text), name
        assert not re.search(r"<link[^>]+href=[\"']?(https?:)?//", text), name
        assert not re.search(r"@import\s+url\([\"']?(https?:)?//", text), name
    (chapters / "02_second.ipynb").rename(chapters / "02_renamed.ipynb")
    (out / "mine.html").write_text("not the book's")
    build_book(out, chapters_dir=chapters, readme=readme, root=ROOT)
    assert (out / "02_renamed.html").exists() and not (out / "02_second.html").exists()
    assert not (out / "notebooks/02_second.ipynb").exists() and (out / "mine.html").exists()


@needs_mathjax
def test_build_refuses_math_that_lost_a_backslash(tmp_path):
    chapters, readme = _mini_course(tmp_path, extra_md="\n\n$U^\top W$")
    with pytest.raises(BookError, match=r"01_first.ipynb cell 0: TAB before 'op W\$': \\top"):
        build_book(tmp_path / "out", chapters_dir=chapters, readme=readme, root=ROOT)


# ----------------------------------------------------------------------------- in Chromium


@needs_mathjax
@needs_browser
def test_the_browser_check_catches_what_a_reader_would_see_broken(tmp_path):
    """The check itself can fail: bad TeX, a broken figure, a dead link, math left as text, a
    request outside the book (to a closed port on this machine)."""
    from book.check import check_book

    bad = (
        '\n\n$\\nosuchmacro{x}$ and <span class="tex2jax_ignore">$a+b$</span> and '
        "[gone](nothere.html) and [anchor](#no-such-anchor) ![x](http://127.0.0.1:9/x.png)"
    )
    chapters, readme = _mini_course(tmp_path, extra_md=bad)
    nb = nbformat.read(chapters / "02_second.ipynb", as_version=4)
    nb.cells.append(
        new_code_cell(
            "plt.show()",
            outputs=[
                new_output(
                    "display_data", data={"image/png": base64.b64encode(b"not a png").decode()}
                )
            ],
        )
    )
    nbformat.write(nb, chapters / "02_second.ipynb")
    book = build_book(tmp_path / "out", chapters_dir=chapters, readme=readme, root=ROOT)
    reports = {r.page: r for r in check_book(book)}
    first, second = reports["01_first.html"], reports["02_second.html"]
    assert any("nosuchmacro" in e for e in first.console_errors), first.console_errors
    assert any("a+b" in r for r in first.raw_math), first.raw_math
    assert {u.rsplit("/", 1)[1] for u in first.broken_links} == {
        "nothere.html",
        "01_first.html#no-such-anchor",
    }
    assert first.network == ["http://127.0.0.1:9/x.png"]
    assert first.figures_expected == first.figures_visible == 1 and not first.figures_broken
    assert second.figures_expected == 1 and second.figures_visible == 0 and second.problems()
    assert not reports["A1_extra.html"].problems() and not reports["index.html"].problems()


@needs_mathjax
@needs_browser
def test_every_chapter_reads_right_in_chromium(tmp_path):
    """The real book: no console errors, every stored figure visible, all math rendered, links
    resolve, no live widgets; a screenshot per chapter in build/book-screenshots/."""
    from book.check import check_book

    book = build_book(tmp_path / "book")
    reports = check_book(book, screenshots=SCREENSHOTS)
    problems = [line for r in reports for line in r.problems()]
    assert problems == [], "\n".join(problems)
    chapter_pages = {c.page for c in book.chapters}
    assert chapter_pages <= {r.page for r in reports}
    shots = {r.page for r in reports if r.screenshot and r.screenshot.stat().st_size > 0}
    assert chapter_pages <= shots
    assert sum(r.figures_expected for r in reports) > 0
