"""Face crop: one box per clip, found on its onset frame by dlib's frontal face detector and
reused for every frame, so that the crop does not jitter with the detector.

Where the detector finds several faces (a poster, a badge or a textured patch beside the
subject), the one with the best detector score is the face, never the largest: a false
positive can be larger than the face, with a score near the detector's threshold. Every
detection is returned with its score (``detect_faces``), so that the caller can report them.

The detector's box is tight (brows to chin); the crop is the square around its centre,
``margin`` larger on each side, so that the forehead and jaw stay in. Where the square
reaches past the image, the edge pixels are repeated. A frame with no face gives ``None``:
the caller reports the clip, nothing is guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

DEFAULT_MARGIN = 0.2  # fraction of the detector box's side added on each side
UPSAMPLES = (0, 1)  # the frame's own scale first; upsampled once only if nothing is found
THRESHOLD = 0.0  # dlib's own threshold for a detection (``adjust_threshold`` 0)


@dataclass(frozen=True)
class Box:
    """A pixel rectangle: columns [left, right), rows [top, bottom)."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def as_list(self) -> list[int]:
        return [self.left, self.top, self.right, self.bottom]


@dataclass(frozen=True)
class Detection:
    """One box the face detector returned, with its score (dlib's SVM margin: higher is
    more face-like; 0 is the detection threshold)."""

    box: Box
    score: float

    def as_dict(self) -> dict:
        return {"box": self.box.as_list(), "score": round(self.score, 3)}

    def describe(self) -> str:
        return f"{self.box.as_list()} score {self.score:.2f}"


class FaceError(Exception):
    """No usable face on a frame; the message is the reason."""


@lru_cache(maxsize=1)
def _detector():
    import dlib  # imported here: only ingest with face crops needs it

    return dlib.get_frontal_face_detector()


def as_gray(frame: np.ndarray) -> np.ndarray:
    """A frame as [H, W] uint8 grayscale (RGB converted)."""
    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def detect_faces(frame: np.ndarray) -> list[Detection]:
    """Every face dlib finds on ``frame`` ([H, W] gray or [H, W, 3] RGB uint8), best score
    first (ties in the detector's order); empty if none. Searched at the frame's own scale
    first, then upsampled once (small faces)."""
    gray = as_gray(frame)
    for upsample in UPSAMPLES:
        rects, scores, _ = _detector().run(gray, upsample, THRESHOLD)
        if len(rects):
            found = [Detection(Box(r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(s))
                     for r, s in zip(rects, scores)]
            return sorted(found, key=lambda d: -d.score)
    return []


def describe_all(found: list[Detection] | tuple[Detection, ...]) -> str:
    """"3 faces found: [l, t, r, b] score 1.55, ..." for a report line."""
    return f"{len(found)} faces found: " + ", ".join(d.describe() for d in found)


def crop_box(face: Box, margin: float = DEFAULT_MARGIN) -> Box:
    """The square crop around ``face``: its larger side plus ``margin`` of it on each side."""
    side = int(round(max(face.width, face.height) * (1 + 2 * margin)))
    cx2, cy2 = face.left + face.right, face.top + face.bottom  # twice the centre
    left, top = (cx2 - side) // 2, (cy2 - side) // 2
    return Box(left, top, left + side, top + side)


def crop_frames(frames: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Every frame cut to ``box`` (edges repeated where it leaves the image) and resized to
    ``size`` x ``size``."""
    h, w = frames.shape[1:3]
    pad = max(0, -box.left, -box.top, box.right - w, box.bottom - h)
    out = np.empty((len(frames), size, size, *frames.shape[3:]), np.uint8)
    for k, f in enumerate(frames):
        if pad:
            f = cv2.copyMakeBorder(f, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        cut = f[box.top + pad: box.bottom + pad, box.left + pad: box.right + pad]
        interp = cv2.INTER_AREA if cut.shape[0] >= size else cv2.INTER_LINEAR
        out[k] = cv2.resize(cut, (size, size), interpolation=interp)
    return out
