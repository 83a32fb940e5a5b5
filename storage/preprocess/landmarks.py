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

**Is it a face?** (``choose_face``: the detector's best-scoring box, then this test.) The
shape predictor draws a face-shaped set of 68 points in *any* box: on brick, grass, gravel or
a patch of clothing its points are in a face's order (brows above eyes above nose above
mouth, left eye left of the right one) with a face's inter-ocular distance, so a test of the
points' geometry passes on textures (measured: every such test passed on every texture box
tried). What differs is whether the points are *held* by the image: on a face the eyes stay
on the eyes when the box moves; on a texture the points are the predictor's mean face placed
in the box and move with it. The test ("the eyes hold"): the box is moved by
``HOLD_SHIFT`` (7 %) of its side right, left, down and up and the landmarks placed again; for
each move, the median over the 12 eye points of how far they followed it along the move, as
a fraction of the move; the face passes when the median over the four moves is at most
``MAX_FOLLOW``. Measured (median over the moves): 0.00 on every one of 76 real faces (the
built-in benchmark's camera frames, two clips of each of its 28 subjects; 12 synthetic-layout
frames; the astronaut photo with 37- to 180-pixel boxes, rotated by 15 degrees either way and
with gamma 1.2; scikit-image's cameraman, a 53-pixel box); 0.17-1.38 on 26 non-faces
(detector false positives at thresholds down to -0.6 on the astronaut's suit, coins, gravel,
a rocket; random boxes on brick, grass, gravel, coffee and rocket photos); the lowest, 0.17,
a coin box at detector score -0.45, which ingest never sees (it keeps scores above 0). The
predictor's pull on a face has a limited reach: moved by 10 % instead, some real faces'
points jumped (0.29 on one benchmark subject), so the move is kept small.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from storage.preprocess.face import Box, Detection, FaceError, as_gray, describe_all, detect_faces

PACKAGE = "face-recognition-models"
MODEL_FILE = "shape_predictor_68_face_landmarks.dat"
INNER_EYE_CORNERS = (39, 42)
DEFAULT_SCALE = 1.3  # box side / landmark extent
DEFAULT_DOWN = 0.2  # box centre below the eyes' midpoint, fraction of the side
EYE_POINTS = tuple(range(36, 48))  # both eyes' contours: the points the hold test follows
HOLD_SHIFT = 0.07  # how far the box is moved in the hold test, fraction of its side
MAX_FOLLOW = 0.1  # the most the eyes may follow the moved box (fraction of the move) on a face


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


@dataclass(frozen=True)
class FaceChoice:
    """The face a clip is cropped around, and what the choice was made from."""

    face: Detection  # the best-scoring detection whose landmarks passed the hold test
    landmarks: np.ndarray  # [68, 2] float32 in ``face``'s box
    found: tuple[Detection, ...]  # every detection on the frame: the one used first, then by score


def _moved(face: Box, dx: int, dy: int) -> Box:
    return Box(face.left + dx, face.top + dy, face.right + dx, face.bottom + dy)


def eye_follow(frame: np.ndarray, face: Box, pts: np.ndarray | None = None, shift: float = HOLD_SHIFT) -> float:
    """How far the eye landmarks follow ``face``'s box when it is moved by ``shift`` of its
    side (right, left, down, up): per move, the median over the eye points of their
    displacement along the move as a fraction of the move; the median over the moves. About 0
    on a face (the image holds the points), about 1 on a texture (see the module docstring)."""
    pts = landmarks_68(frame, face) if pts is None else pts
    step = max(1, int(round(shift * face.width)))
    eyes = list(EYE_POINTS)
    follows = []
    for dx, dy in ((step, 0), (-step, 0), (0, step), (0, -step)):
        moved = landmarks_68(frame, _moved(face, dx, dy))
        along = (moved[eyes] - pts[eyes]) @ np.array([dx, dy], np.float64) / float(step * step)
        follows.append(float(np.median(along)))
    return float(np.median(follows))


def choose_face(frame: np.ndarray) -> FaceChoice:
    """The face on ``frame``: the best-scoring detection whose landmarks hold (see the module
    docstring) — tried in score order —, else FaceError with the reason (every detection
    named where there are several)."""
    gray = as_gray(frame)
    found = tuple(detect_faces(gray))
    if not found:
        raise FaceError("no face found on the onset frame")
    follows = []
    for face in found:
        pts = landmarks_68(gray, face.box)
        follow = eye_follow(gray, face.box, pts)
        if follow <= MAX_FOLLOW:
            return FaceChoice(face, pts, (face, *(d for d in found if d is not face)))
        follows.append(follow)
    how = (f"(moved by {HOLD_SHIFT:.0%} of the box, the eyes follow it by {', '.join(f'{f:.2f}' for f in follows)} "
           f"of the move; on a face they stay put: at most {MAX_FOLLOW:.2f})")
    if len(found) == 1:
        raise FaceError(f"the face box {found[0].describe()} is not a face: its landmarks do not hold {how}")
    raise FaceError(f"none of the {len(found)} face boxes is a face: their landmarks do not hold {how}; "
                    f"{describe_all(found)}")
