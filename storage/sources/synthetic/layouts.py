"""The synthetic benchmark written in real datasets' layouts, so that every loader is tested
on frames that exist, under the exact paths the official distributions use."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from storage.sources.casme3 import AnnotationRow
from storage.sources.synthetic.benchmark import SyntheticSpec, _Subject, render_clip

# CAS(ME)^3 emotions -> the synthetic expression rendered for them
CASME3_TO_SYNTHETIC = {"happy": "happiness", "anger": "anger", "fear": "fear", "disgust": "disgust",
                       "surprise": "surprise", "sad": "sadness", "others": "contempt"}


def write_casme3_layout(root: str | Path, rows: Iterable[AnnotationRow],
                        spec: SyntheticSpec = SyntheticSpec(size=64)) -> int:
    """Render each row's clip (onset..offset at 30 fps) as JPEGs at
    ``root/part_A/{Subject}/{Filename}/color/{n}.jpg``. Returns the number of frames written.
    Rows must be usable (``problem is None``)."""
    root = Path(root)
    subjects: dict[str, _Subject] = {}
    written = 0
    for row in rows:
        if row.problem:
            raise ValueError(f"row {row.sheet_row}: cannot render a defective row ({row.problem})")
        if row.subject not in subjects:
            subjects[row.subject] = _Subject(spec, np.random.default_rng([spec.seed, len(subjects), 11]))
        rng = np.random.default_rng([spec.seed, row.index, 12])
        frames, _ = render_clip(subjects[row.subject], CASME3_TO_SYNTHETIC[row.emotion], spec, rng,
                                30.0, n_frames=row.frame_count)
        folder = root / "part_A" / row.subject / row.filename / "color"
        folder.mkdir(parents=True, exist_ok=True)
        for n, frame in zip(range(row.onset, row.offset + 1), frames):
            cv2.imwrite(str(folder / f"{n}.jpg"), cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
            written += 1
    return written
