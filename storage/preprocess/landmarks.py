"""68-point facial landmarks (dlib's shape predictor, iBUG 300-W numbering) and the face box
derived from them.

The predictor's model file ships in the ``face-recognition-models`` package; it is found
on disk, not imported (the package's ``__init__`` needs ``pkg_resources``), and loaded once
per process.

The box is a square centred on the midpoint of the inner eye corners (points 39 and 42)
shifted down by ``down`` of its side, with a side of ``scale`` times the landmarks' extent
(the larger of their width and height: brows to chin on a frontal face). The eye corners
place the box on the face's axis whatever the jaw line does; the extent sizes it to the
face. With the defaults (``scale=1.3``, ``down=0.2``) the eyes sit at 30 % of the box's
height, the brows at ~15 % and the chin at ~90 %: brows to chin with a little forehead.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from storage.preprocess.face import Box, as_gray

PACKAGE = "face-recognition-models"
MODEL_FILE = "shape_predictor_68_face_landmarks.dat"
INNER_EYE_CORNERS = (39, 42)
DEFAULT_SCALE = 1.3  # box side / landmark extent
DEFAULT_DOWN = 0.2  # box centre below the eyes' midpoint, fraction of the side


def model_path() -> Path:
    """Where the 68-point model file is, or FileNotFoundError naming the package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.submodule_search_locations:
        path = Path(spec.submodule_search_locations[0]) / "models" / MODEL_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"dlib's landmark model {MODEL_FILE} not found: install the {PACKAGE} "
                            f"package (pip install {PACKAGE})")


@lru_cache(maxsize=1)
def _predictor():
    import dlib  # imported here: only ingest with landmarks needs it

    return dlib.shape_predictor(str(model_path()))


def landmarks_68(frame: np.ndarray, face: Box) -> np.ndarray:
    """The 68 landmarks [68, 2] float32 (x, y) in ``frame``'s pixels ([H, W] gray or
    [H, W, 3] RGB uint8), placed inside the detector's box ``face``. Points may fall
    outside the image when the face does."""
    import dlib

    rect = dlib.rectangle(face.left, face.top, face.right - 1, face.bottom - 1)
    shape = _predictor()(as_gray(frame), rect)
    return np.array([(p.x, p.y) for p in shape.parts()], np.float32)


def face_box_from_landmarks(pts: np.ndarray, frame_shape: tuple[int, ...], scale: float = DEFAULT_SCALE,
                            down: float = DEFAULT_DOWN) -> Box:
    """The square face box of landmarks ``pts`` [68, 2] (see the module docstring). It is
    not clipped to ``frame_shape`` ([H, W, ...]); ``frame_shape`` only bounds the side,
    which is at least 8 pixels and at most the frame's larger side."""
    extent = float((pts.max(axis=0) - pts.min(axis=0)).max())
    side = int(round(min(max(scale * extent, 8.0), max(frame_shape[:2]))))
    cx, cy = pts[list(INNER_EYE_CORNERS)].mean(axis=0)
    cy += down * side
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    return Box(left, top, left + side, top + side)
