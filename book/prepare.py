"""Make a chapter notebook ready for a static page: no live widgets, web links, and math that was
written as meant.

Everything here works on an ``nbformat`` notebook in memory; the files in ``chapters/`` are never
changed.
"""

from __future__ import annotations

import copy
import html
import re

import nbformat

VIEW_MIME = "application/vnd.jupyter.widget-view+json"
STATE_MIME = "application/vnd.jupyter.widget-state+json"

# A LaTeX command written into a normal (not raw) Python string loses its backslash: "\top" becomes
# TAB + "op", "\rVert" a carriage return + "Vert", "\frac" a form feed + "rac", "\beta" a backspace
# + "eta", "\alpha" a bell + "lpha", "\vec" a vertical tab + "ec". Markdown never needs these.
_ESCAPES = {"\t": ("TAB", "t"), "\r": ("CR", "r"), "\f": ("form feed", "f"),
            "\b": ("backspace", "b"), "\a": ("bell", "a"), "\v": ("vertical tab", "v")}
_LOST_BACKSLASH = re.compile(r"(\t(?=[A-Za-z])|\r(?!\n)|[\f\b\a\v])")

# A relative link to a notebook, in Markdown "](x.ipynb#frag)" or HTML href="x.ipynb".
_NOTEBOOK_LINK = re.compile(r"""(\]\(|href=["'])(?!\w+://)([^)"'#\s]*?)\.ipynb(?=[)#"'])""")


def lost_backslashes(nb: nbformat.NotebookNode) -> list[str]:
    """Places where a markdown cell (or a stored Markdown/LaTeX output) holds a control character
    left by a LaTeX command written through a non-raw Python string.

    Returns
    -------
    list of str
        One line per place, e.g. ``cell 29: TAB before 'op W V': \\top written through a
        non-raw Python string lost its backslash``; empty when all is well.
    """
    problems = []
    for index, cell in enumerate(nb.cells):
        texts = [cell.source] if cell.cell_type == "markdown" else []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            texts += [data[m] for m in ("text/markdown", "text/latex") if isinstance(data.get(m), str)]
        for text in texts:
            for m in _LOST_BACKSLASH.finditer(text):
                name, letter = _ESCAPES[m.group()]
                after = re.match(r"[^\x00-\x1f]{0,10}", text[m.end():]).group()
                command = "\\" + letter + re.match(r"[A-Za-z]*", after).group()
                problems.append(f"cell {index}: {name} before {after!r}: {command} written "
                                "through a non-raw Python string lost its backslash")
    return problems


def web_links(source: str) -> str:
    """Point relative links to notebooks at their pages: ``03_x.ipynb`` becomes ``03_x.html``."""
    return _NOTEBOOK_LINK.sub(lambda m: f"{m.group(1)}{m.group(2)}.html", source)


def _models(model_id: str, state: dict) -> list[dict]:
    """The widget model ``model_id`` and every model under it, depth first."""
    seen, order, stack = set(), [], [model_id]
    while stack:
        mid = stack.pop()
        if mid in seen or mid not in state:
            continue
        seen.add(mid)
        model = state[mid].get("state", {})
        order.append(model)
        refs = []
        for value in model.values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str) and item.startswith("IPY_MODEL_"):
                    refs.append(item[len("IPY_MODEL_"):])
        stack.extend(reversed(refs))
    return order


def _control_text(model: dict) -> str | None:
    """``r = 3 (0 to 30)`` for a control with a description and a value, else ``None``."""
    if "value" not in model or model.get("_model_name") in (None, "OutputModel", "LabelModel"):
        return None
    name = model.get("description") or model.get("_model_name", "control")
    text = f"{name} = {model['value']}"
    if "min" in model and "max" in model:
        text += f" ({model['min']} to {model['max']})"
    return text


def widget_fallback(view: dict, state: dict) -> tuple[str, int]:
    """Static HTML standing in for one ipywidgets view.

    Parameters
    ----------
    view : dict
        The output's ``application/vnd.jupyter.widget-view+json`` data (holds ``model_id``).
    state : dict
        The notebook's saved widget state (``model_id -> {"state": ...}``); may be empty.

    Returns
    -------
    html : str
        A note naming the control and its saved settings, followed by what its output area showed
        when the notebook was saved (images and text), when the state holds it.
    n_images : int
        How many saved images the fallback shows.
    """
    models = _models(view.get("model_id", ""), state)
    controls = [t for t in map(_control_text, models) if t]
    parts, n_images = [], 0
    for model in models:
        for out in model.get("outputs", []) if model.get("_model_name") == "OutputModel" else []:
            data = out.get("data", {})
            if "image/png" in data:
                parts.append('<img class="book-widget-snapshot" alt="saved output of the control" '
                             f'src="data:image/png;base64,{data["image/png"].strip()}">')
                n_images += 1
            elif out.get("output_type") == "stream":
                parts.append(f"<pre>{html.escape(out.get('text', ''))}</pre>")
            elif "text/plain" in data:
                parts.append(f"<pre>{html.escape(data['text/plain'])}</pre>")
    settings = f" Saved settings: {html.escape(', '.join(controls))}." if controls else ""
    shown = ("It showed this when the chapter was saved:" if parts else
             "The cell below draws the same figure at fixed settings.")
    note = ('<p class="book-widget-note"><strong>Interactive control.</strong> This cell shows '
            "an ipywidgets control, which needs a running Python kernel: open the chapter in "
            f"JupyterLab (<code>make lab</code>) to move it.{settings} {shown}</p>")
    return f'<div class="book-widget">{note}{"".join(parts)}</div>', n_images


def for_the_web(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` ready for a static page: widget views replaced by :func:`widget_fallback`,
    the saved widget state dropped (no widget JavaScript is loaded), notebook links made web links.
    """
    nb = copy.deepcopy(nb)
    state = nb.metadata.get("widgets", {}).get(STATE_MIME, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = web_links(cell.source)
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if VIEW_MIME in data:
                fallback, _ = widget_fallback(data[VIEW_MIME], state)
                out["data"] = {"text/html": fallback}
    nb.metadata.pop("widgets", None)
    return nb
