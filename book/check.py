"""Open every page of a built book in headless Chromium and report what a reader would see broken.

For each page: console errors (including MathJax's TeX errors, which the book's pages log), every
figure stored in the chapter notebook present as a loaded, visible image, no ``$...$`` or
``\\begin`` left as text where math should be, no live-widget markup, nothing requested from
outside the book (the network), and every link inside the book pointing at a page (and anchor)
that exists. A screenshot of each chapter is written.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .browser import BrowserError, Chromium, find_browser
from .build import Book

READY = ("document.readyState === 'complete' && "
         "(!window.MathJax || document.body.getAttribute('data-math') === 'done')")

# Runs in the page; returns what check_book compares with the notebook.
_INSPECT = r"""(() => {
  const visible = (el) => { const r = el.getBoundingClientRect(), s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
  const figures = Array.from(document.querySelectorAll(
      '.jp-Cell .jp-RenderedImage img, .jp-Cell .jp-RenderedSVG svg'))
    .filter((el) => !el.closest('.book-widget'))
    .map((el) => ({ok: visible(el) && (el.tagName !== 'IMG' || (el.complete && el.naturalWidth > 0)),
                   what: el.tagName + ' ' + (el.getAttribute('src') || '').slice(0, 40)}));
  const skip = 'code, pre, script, style, .MathJax, .MathJax_Display, .MathJax_Preview, ' +
               '.MJX_Assistive_MathML, .MathJax_SVG, mjx-container';
  const raw = [];
  for (const box of document.querySelectorAll('.jp-RenderedMarkdown, .jp-RenderedHTMLCommon')) {
    const copy = box.cloneNode(true);
    copy.querySelectorAll(skip).forEach((el) => el.remove());
    const text = copy.textContent;
    for (const m of text.matchAll(/\$\$|\$[^$\s][^$]*?\$|\\begin\{|\\\(|\\\[/g))
      raw.push(text.slice(Math.max(0, m.index - 30), m.index + 50).replace(/\s+/g, ' '));
  }
  return {figures, raw, links: Array.from(document.querySelectorAll('a[href]')).map((a) => a.href),
          widgets: document.querySelectorAll('script[type^="application/vnd.jupyter.widget"]').length,
          title: document.title};
})()"""


@dataclass
class PageReport:
    """What the browser saw on one page of the book."""

    page: str
    console_errors: list[str] = field(default_factory=list)
    figures_expected: int = 0
    figures_visible: int = 0
    figures_broken: list[str] = field(default_factory=list)
    raw_math: list[str] = field(default_factory=list)
    broken_links: list[str] = field(default_factory=list)
    live_widgets: int = 0
    network: list[str] = field(default_factory=list)
    screenshot: Path | None = None

    def problems(self) -> list[str]:
        """One line per problem found; empty when the page is fine."""
        out = [f"{self.page}: console error: {e}" for e in self.console_errors]
        if self.figures_visible != self.figures_expected or self.figures_broken:
            out.append(f"{self.page}: {self.figures_visible} visible figures, the notebook stores "
                       f"{self.figures_expected}; not shown: {self.figures_broken}")
        out += [f"{self.page}: math left as text: ...{r}..." for r in self.raw_math]
        out += [f"{self.page}: link to nothing: {link}" for link in self.broken_links]
        out += [f"{self.page}: fetched from outside the book: {url}" for url in self.network]
        if self.live_widgets:
            out.append(f"{self.page}: {self.live_widgets} live widget blocks (need a kernel)")
        return out


def stored_figures(nb) -> int:
    """Figures a notebook stores in its cells' outputs (PNG, JPEG or SVG)."""
    return sum(1 for cell in nb.cells for out in cell.get("outputs", [])
               if {"image/png", "image/jpeg", "image/svg+xml"} & set(out.get("data", {})))


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids.update(v for k, v in attrs if k in ("id", "name") and v)


@functools.lru_cache(maxsize=64)
def _ids(path: Path, mtime: float) -> frozenset[str]:
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8"))
    return frozenset(parser.ids)


def _broken(links: list[str], out: Path) -> list[str]:
    """Links into the book whose page, or anchor on that page, does not exist."""
    bad = []
    for url in links:
        parts = urlsplit(url)
        if parts.scheme != "file":
            continue  # the web outside the book is not checked (no network here)
        target = Path(unquote(parts.path))
        if out.resolve() not in target.resolve().parents or not target.is_file():
            bad.append(url)
        elif parts.fragment and target.suffix == ".html":
            ids = _ids(target, target.stat().st_mtime)
            # as browsers do: the fragment as written, then percent-decoded
            if parts.fragment not in ids and unquote(parts.fragment) not in ids:
                bad.append(url)
    return bad


def check_book(book: Book, screenshots: Path | str | None = None,
               browser: str | None = None, timeout: float = 60.0) -> list[PageReport]:
    """Open every page of ``book`` in headless Chromium and report on each.

    Parameters
    ----------
    book : Book
        What :func:`build_book` returned.
    screenshots : path, optional
        Folder for one PNG per chapter page (and the landing page), named after the page.
    browser : str, optional
        The browser's executable; by default :func:`find_browser`'s.
    timeout : float
        Seconds a page may take to load and typeset its math.

    Returns
    -------
    list of PageReport
        One per page, in the order of ``book.pages``.
    """
    import nbformat

    executable = browser or find_browser()
    if executable is None:
        raise BrowserError("no Chromium found (set BOOK_BROWSER, or install Debian's chromium)")
    expected = {c.page: stored_figures(nbformat.read(c.path, as_version=4)) for c in book.chapters}
    shots = Path(screenshots) if screenshots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    reports = []
    with Chromium(executable, timeout=timeout) as chromium:
        for page in book.pages:
            chromium.open(page.resolve().as_uri(), ready=READY, timeout=timeout)
            seen = chromium.evaluate(_INSPECT)
            report = PageReport(page.name, console_errors=chromium.console_errors(),
                                figures_expected=expected.get(page.name, 0),
                                raw_math=seen["raw"], live_widgets=seen["widgets"],
                                broken_links=_broken(seen["links"], book.out))
            report.network = list(dict.fromkeys(u for u in chromium.requests()
                                                if not u.startswith("file:")))
            report.figures_visible = sum(f["ok"] for f in seen["figures"])
            report.figures_broken = [f["what"] for f in seen["figures"] if not f["ok"]]
            if shots and (page.name in expected or page.name == "index.html"):
                report.screenshot = chromium.screenshot(shots / (page.stem + ".png"))
            reports.append(report)
    return reports
