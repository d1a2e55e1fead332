"""The chapters' pictures draw without error and say what they show."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lorakit.viz import draw_lora  # noqa: E402


def test_draw_lora_labels_the_frozen_weight_and_both_factors():
    fig, ax = plt.subplots()
    assert draw_lora(ax, d="768", k="768", r="4") is ax
    text = " ".join(t.get_text() for t in ax.texts)
    assert "W_0" in text and "frozen" in text and "B = 0" in text and "mathcal{N}" in text
    assert "768" in text and "$4$ numbers" in text
    assert len(ax.patches) >= 4  # W0, A, B and the sum
    plt.close(fig)


def test_draw_lora_makes_its_own_axes():
    ax = draw_lora(title=None)
    assert ax.get_title() == ""
    plt.close(ax.figure)
