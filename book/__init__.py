"""The course as a static web book: ``python -m book`` (or ``make book``) writes ``build/book/``.

:func:`build_book` exports every chapter notebook with its stored outputs, adds a landing page
from the README and a page per ``lorakit`` module; :func:`check_book` opens each page in headless
Chromium and reports what a reader would see broken.
"""

from .build import Book, BookError, Chapter, build_book, discover_chapters
from .check import PageReport, check_book

__all__ = ["Book", "BookError", "Chapter", "PageReport", "build_book", "check_book",
           "discover_chapters"]
