"""A confusion matrix as a PNG (the paper's Figure 1): two panels, counts and
row-normalised (each true class's row sums to 1: its recall on the diagonal), both with the
class names on the axes. Used for each trial's test sets (the run's ``confusion_*.png``) and
for the pooled matrices on a sweep's parent run.

Drawn with Pillow (Pillow's bundled TrueType font), not matplotlib: a trial pays a few
milliseconds per figure instead of ~0.3 s plus ~1 s to import matplotlib in each worker —
per-trial overhead that 150-trial sweeps multiply."""

from __future__ import annotations

import io

import numpy as np

CELL = 40  # pixels per matrix cell
FONT_PX = 13
_LIGHT, _DARK = np.array([247, 251, 255]), np.array([8, 48, 107])  # the ends of a white-to-blue scale


def confusion_png(matrix, classes: list[str], title: str = "", drawn: list | None = None) -> bytes:
    """``matrix[i, j]``: clips of true class ``classes[i]`` predicted as ``classes[j]``.
    ``drawn``, if given, receives every text drawn as ``(text, where)`` (``where``: "title",
    "panel", "row", "column", "cell", "axis"), in drawing order."""
    from PIL import Image, ImageDraw, ImageFont

    cm = np.asarray(matrix, dtype=np.float64)
    k = len(classes)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix of shape {cm.shape} for {k} classes {classes}")
    support = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)
    font = ImageFont.load_default(size=FONT_PX)
    small = ImageFont.load_default(size=FONT_PX - 2)
    name_px = max(int(font.getlength(c)) for c in classes) + 8
    top, side, gap = 2 * FONT_PX + 24, k * CELL, 30
    panel_w = name_px + FONT_PX + 12 + side
    width = 2 * panel_w + gap + 20
    height = top + side + name_px + FONT_PX + 24
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    record = drawn if drawn is not None else []

    def text(xy, s, where, anchor="mm", f=font, fill="black"):
        draw.text(xy, s, font=f, fill=fill, anchor=anchor)
        record.append((s, where))

    def vertical(x, y, s, where, anchor_bottom: bool):
        """``s`` turned 90 degrees (read bottom to top), its right end at ``y`` if ``anchor_bottom`` is False."""
        w = int(font.getlength(s)) + 4
        tile = Image.new("RGB", (w, FONT_PX + 6), "white")
        ImageDraw.Draw(tile).text((2, (FONT_PX + 6) // 2), s, font=font, fill="black", anchor="lm")
        tile = tile.rotate(90, expand=True)
        img.paste(tile, (x - tile.width // 2, y if anchor_bottom else y - tile.height))
        record.append((s, where))

    if title:
        text((width // 2, FONT_PX), title, "title")
    for p, (values, what, fmt) in enumerate(((cm, "counts", "{:.0f}"), (norm, "row-normalised (recall)", "{:.2f}"))):
        x0 = 10 + p * (panel_w + gap) + name_px + FONT_PX + 12  # the matrix's left edge
        scale = values.max() if values.max() > 0 else 1.0
        text((x0 + side // 2, top - 10), what, "panel")
        for i in range(k):
            for j in range(k):
                t = values[i, j] / scale
                color = tuple(int(c) for c in np.round(_LIGHT + (_DARK - _LIGHT) * t))
                box = (x0 + j * CELL, top + i * CELL, x0 + (j + 1) * CELL - 1, top + (i + 1) * CELL - 1)
                draw.rectangle(box, fill=color)
                text((x0 + j * CELL + CELL // 2, top + i * CELL + CELL // 2), fmt.format(values[i, j]), "cell",
                     f=small, fill="white" if t > 0.6 else "black")
        draw.rectangle((x0 - 1, top - 1, x0 + side, top + side), outline="black")
        for i, c in enumerate(classes):
            text((x0 - 6, top + i * CELL + CELL // 2), c, "row", anchor="rm")
            vertical(x0 + i * CELL + CELL // 2, top + side + 4, c, "column", anchor_bottom=True)
        vertical(x0 - name_px - FONT_PX // 2 - 6, top + side // 2 + int(font.getlength("true class")) // 2,
                 "true class", "axis", anchor_bottom=False)
        text((x0 + side // 2, height - FONT_PX), "predicted class", "axis")
    buf = io.BytesIO()
    img.save(buf, format="png", optimize=False, compress_level=6)
    return buf.getvalue()
