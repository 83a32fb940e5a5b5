"""The confusion-matrix figure (``trainables.confusion_figure``): a PNG whose axes name the
classes, counts and row-normalised."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from trainables.confusion_figure import confusion_png


def test_the_png_has_both_panels_with_the_class_names_and_the_values(monkeypatch):
    seen: list[Figure] = []
    real = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (seen.append(self), real(self, *a, **k))[1])
    classes = ["happiness", "surprise", "disgust"]
    png = confusion_png(np.array([[3, 1, 0], [0, 2, 2], [1, 0, 0]]), classes, "seed0-N4: test")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (fig,) = seen
    counts, norm = fig.axes
    for ax in (counts, norm):
        assert [t.get_text() for t in ax.get_xticklabels()] == classes
        assert [t.get_text() for t in ax.get_yticklabels()] == classes
    assert [t.get_text() for t in counts.texts] == ["3", "1", "0", "0", "2", "2", "1", "0", "0"]
    assert [t.get_text() for t in norm.texts][:3] == ["0.75", "0.25", "0.00"]  # each true class's row sums to 1
    assert fig._suptitle.get_text() == "seed0-N4: test"
