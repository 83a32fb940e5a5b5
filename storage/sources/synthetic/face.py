"""The face the synthetic benchmark is rendered from: scikit-image's ``astronaut`` photo
(a real face that ships with the package), its face box, and the facial points that
action-unit-like deformations move.

Points are in face-box units: (x, y) with (0, 0) the box's top-left corner and (1, 1) its
bottom-right. They were placed by eye on the photo (see ``docs/ARCHITECTURE.md``).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

# Face box in the 512x512 astronaut photo: rows, cols (top, bottom), (left, right).
FACE_BOX_ROWS = (60, 190)
FACE_BOX_COLS = (158, 288)

POINTS: dict[str, tuple[float, float]] = {
    "brow_outer_l": (0.24, 0.22),
    "brow_inner_l": (0.41, 0.22),
    "brow_inner_r": (0.59, 0.22),
    "brow_outer_r": (0.76, 0.22),
    "lid_upper_l": (0.32, 0.29),
    "lid_upper_r": (0.67, 0.29),
    "nose_bridge": (0.50, 0.36),
    "nose_wing_l": (0.44, 0.47),
    "nose_wing_r": (0.58, 0.47),
    "lip_upper": (0.50, 0.60),
    "mouth_corner_l": (0.36, 0.63),
    "mouth_corner_r": (0.64, 0.63),
    "lip_lower": (0.50, 0.69),
}


@lru_cache(maxsize=1)
def photo_gray() -> np.ndarray:
    """The whole astronaut photo in grayscale, float32 in [0, 255]."""
    from skimage import data  # imported here: scikit-image is only needed to render

    gray = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY).astype(np.float32)
    gray.setflags(write=False)
    return gray


def face_affine(size: int, scale: float = 1.0, angle_deg: float = 0.0,
                shift_px: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """2x3 matrix mapping photo coordinates to a ``size`` x ``size`` render of the face box,
    optionally scaled and rotated about the box centre and shifted (render pixels)."""
    (t, b), (l, r) = FACE_BOX_ROWS, FACE_BOX_COLS
    k = (size - 1) / (r - l)
    cx, cy = (l + r) / 2, (t + b) / 2
    m = cv2.getRotationMatrix2D((cx, cy), angle_deg, scale * k)
    m[0, 2] += (size - 1) / 2 - cx + shift_px[0]
    m[1, 2] += (size - 1) / 2 - cy + shift_px[1]
    return m


def point_px(name: str, size: int, face_view: float = 1.0) -> tuple[float, float]:
    """A named point in pixel coordinates (x, y) of a ``size`` x ``size`` render whose face
    box spans ``face_view`` of the frame, centred."""
    x, y = POINTS[name]
    if face_view == 1.0:
        return x * (size - 1), y * (size - 1)
    c = (size - 1) / 2
    return c + (x - 0.5) * (size - 1) * face_view, c + (y - 0.5) * (size - 1) * face_view
