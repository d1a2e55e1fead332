"""Plotting helpers for the chapters (matplotlib): the static pictures the course draws.

:func:`draw_lora` draws a LoRA layer the way Figure 1 of the paper (Hu et al. 2021) does: the
frozen pretrained weight ``W0`` beside the trainable branch ``x -> A -> B``, whose outputs add up.
"""

from __future__ import annotations

from matplotlib import patches
from matplotlib.axes import Axes


def _box(ax: Axes, xy: tuple[float, float], w: float, h: float, color: str, text: str) -> None:
    ax.add_patch(
        patches.FancyBboxPatch(xy, w, h, boxstyle="round,pad=0.02", fc=color, ec="k", lw=1)
    )
    ax.text(xy[0] + w / 2, xy[1] + h / 2, text, ha="center", va="center", fontsize=10)


def _trapezoid(
    ax: Axes, y: float, h: float, bottom: float, top: float, cx: float, color: str, text: str
) -> None:
    corners = [
        (cx - bottom / 2, y),
        (cx + bottom / 2, y),
        (cx + top / 2, y + h),
        (cx - top / 2, y + h),
    ]
    ax.add_patch(patches.Polygon(corners, closed=True, fc=color, ec="k", lw=1))
    ty = y + (0.35 if bottom > top else 0.65) * h  # the text sits in the wide half
    ax.text(cx, ty, text, ha="center", va="center", fontsize=9)


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float]) -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", lw=1.2, color="k"))


def draw_lora(
    ax: Axes | None = None,
    d: str = "d",
    k: str = "k",
    r: str = "r",
    title: str | None = "A LoRA layer: h = W0 x + (α/r) B A x",
) -> Axes:
    """Draw a LoRA layer in the style of the paper's Figure 1 and return the axes.

    The frozen ``W0 ∈ R^{d×k}`` (blue) maps the input ``x`` (k numbers) to ``d`` outputs; beside it
    ``A ∈ R^{r×k}`` (random Gaussian at the start) narrows ``x`` to ``r`` numbers and
    ``B ∈ R^{d×r}`` (zero at the start) widens them back to ``d``; the two paths add up to ``h``.

    Parameters
    ----------
    ax : matplotlib Axes, optional
        Where to draw (default: a new 5 x 4.2 inch figure).
    d, k, r : str
        The labels of the sizes (e.g. ``"768"``).
    title : str or None
        The axes title.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(5, 4.2))
    ax.set(xlim=(0, 10.5), ylim=(0, 10), aspect="equal")
    ax.axis("off")
    _box(
        ax,
        (0.6, 3.2),
        3.8,
        3.2,
        "#9ecae1",
        f"Pretrained\nweights\n$W_0 \\in \\mathbb{{R}}^{{{d}\\times {k}}}$\n(frozen)",
    )
    _trapezoid(
        ax,
        1.9,
        2.6,
        4.2,
        1.0,
        7.4,
        "#fdae6b",
        f"$A \\in \\mathbb{{R}}^{{{r}\\times {k}}}$\n$A = \\mathcal{{N}}(0, \\sigma^2)$",
    )
    _trapezoid(
        ax,
        5.1,
        2.6,
        1.0,
        4.2,
        7.4,
        "#fdae6b",
        f"$B \\in \\mathbb{{R}}^{{{d}\\times {r}}}$\n$B = 0$",
    )
    ax.text(8.2, 4.8, f"${r}$ numbers", ha="left", va="center", fontsize=9)
    ax.add_patch(patches.Circle((5.0, 8.6), 0.35, fc="white", ec="k", lw=1))
    ax.text(5.0, 8.6, "+", ha="center", va="center", fontsize=14)
    ax.text(5.0, 9.6, "$h$", ha="center", va="center", fontsize=12)
    ax.text(5.0, 0.3, f"$x$  ({k} numbers)", ha="center", va="center", fontsize=11)
    for end in ((2.5, 3.15), (7.4, 1.85)):  # x feeds both paths
        _arrow(ax, (5.0, 0.7), end)
    _arrow(ax, (2.5, 6.45), (4.7, 8.45))  # W0 x
    _arrow(ax, (7.4, 7.75), (5.3, 8.45))  # (α/r) B A x
    ax.text(6.6, 8.5, "× α/r", ha="left", va="center", fontsize=9)
    _arrow(ax, (5.0, 8.95), (5.0, 9.35))
    ax.text(2.5, 2.75, "no gradient", ha="center", va="center", fontsize=8, style="italic")
    ax.text(10.0, 6.4, "trained", ha="center", va="center", fontsize=8, style="italic", rotation=90)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


__all__ = ["draw_lora"]
