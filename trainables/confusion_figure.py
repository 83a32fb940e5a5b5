"""A confusion matrix as a PNG (the paper's Figure 1): two panels, counts and
row-normalised (each true class's row sums to 1: its recall on the diagonal), both with the
class names on the axes. Used for each trial's test sets (the run's ``confusion_*.png``) and
for the pooled matrices on a sweep's parent run."""

from __future__ import annotations

import io

import numpy as np


def confusion_png(matrix, classes: list[str], title: str = "") -> bytes:
    """``matrix[i, j]``: clips of true class ``classes[i]`` predicted as ``classes[j]``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # no pyplot: no global figure state in a trial process

    cm = np.asarray(matrix, dtype=np.float64)
    k = len(classes)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix of shape {cm.shape} for {k} classes {classes}")
    support = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)
    side = 2.2 + 0.55 * k
    label = 0.08 + 8 / 72 * 0.62 * max(len(c) for c in classes)  # the longest class name at fontsize 8, in inches
    width, height = 2 * side + 2 * label + 0.6, side + label + 0.5
    fig = Figure(figsize=(width, height), dpi=110)
    # fixed margins that fit the names (measured layout, tight_layout, costs a second draw: ~0.2 s)
    fig.subplots_adjust(left=(label + 0.45) / width, right=1 - 0.1 / width, bottom=(label + 0.45) / height,
                        top=1 - 0.45 / height, wspace=(label + 0.55) / (side - 0.3))
    for idx, (values, what, fmt) in enumerate(((cm, "counts", "{:.0f}"), (norm, "row-normalised (recall)", "{:.2f}"))):
        ax = fig.add_subplot(1, 2, idx + 1)
        scale = values.max() if values.max() > 0 else 1.0
        ax.imshow(values, cmap="Blues", vmin=0, vmax=scale)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if values[i, j] > 0.6 * scale else "black")
        ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(what, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
