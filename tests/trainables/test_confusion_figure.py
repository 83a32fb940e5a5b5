"""The confusion-matrix figure (``trainables.confusion_figure``): a PNG whose axes name the
classes, counts and row-normalised."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from trainables.confusion_figure import confusion_png


def test_the_png_has_both_panels_with_the_class_names_and_the_values():
    classes = ["happiness", "surprise", "disgust"]
    drawn: list = []
    png = confusion_png(np.array([[3, 1, 0], [0, 2, 2], [1, 0, 0]]), classes, "seed0-N4: test", drawn)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and Image.open(io.BytesIO(png)).size[0] > 300
    said = lambda where: [t for t, w in drawn if w == where]  # noqa: E731
    assert said("title") == ["seed0-N4: test"]
    assert said("panel") == ["counts", "row-normalised (recall)"]
    assert said("row") == classes * 2 and said("column") == classes * 2  # both panels, both axes
    cells = said("cell")
    assert cells[:9] == ["3", "1", "0", "0", "2", "2", "1", "0", "0"]
    assert cells[9:12] == ["0.75", "0.25", "0.00"]  # each true class's row sums to 1
    assert said("axis") == ["true class", "predicted class"] * 2


def test_different_names_draw_a_different_picture():
    """The names are drawn into the pixels, not only recorded."""
    cm = np.array([[1, 0], [0, 1]])
    a = np.asarray(Image.open(io.BytesIO(confusion_png(cm, ["anger", "fear"]))))
    b = np.asarray(Image.open(io.BytesIO(confusion_png(cm, ["anger", "fxar"]))))
    assert a.shape == b.shape and (a != b).any()
