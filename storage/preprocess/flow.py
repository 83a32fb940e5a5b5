"""The paper's per-frame input: optical flow from the onset frame, pooled over 18 facial
regions of interest, after global head motion is removed.

One clip at a time (``clip_flow_features``):

1. the face is chosen on the onset frame (``landmarks.choose_face``: the detector's
   best-scoring box whose 68 landmarks hold to the image), and the square box derived from
   its landmarks (``face_box_from_landmarks``) crops every frame, resized
   to ``crop_size`` (256: the flow is computed on the face magnified about 3x from a
   128-pixel camera frame, where sub-pixel motions become pixels);
2. dense Farneback flow from the onset crop to each frame's crop;
3. global motion: the frame's rigid shift is the median flow over the nose bridge (the
   nose barely moves in a micro-expression) and is subtracted from every vector. Where it
   is larger than ``recrop_px`` the frame's crop box is moved by it (sub-pixel) and the
   flow computed again, at most ``max_iterations`` times: Farneback underestimates shifts
   of the bridge, which has little texture (by 10-20 %), so a large drift is removed by
   moving the box, and only a small remainder by subtraction;
4. per ROI one (dx, dy): the mean of the ``top_fraction`` of its vectors with the largest
   magnitude (a region's motion is concentrated on the feature that moves; the mean over the
   whole square would dilute it with skin that stays still).

The result depends only on the frames: OpenCV's thread count does not change it (checked
with 1, 2 and 8 threads), and the frames are processed in a fixed order.

ROIs are squares around landmarks (offset from them in inter-ocular units), with a side
of ``ROI_SIDE`` inter-ocular distances, in the ``ROIS`` table. "l" and "r" are the image's
left and right (the subject's right and left). Every failure is a ``FeatureError`` with the
reason the ingest report shows (no face, a face box whose landmarks do not hold, landmarks
outside the image, a clip under 2 frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from storage.preprocess.face import Box, Detection, FaceError, as_gray
from storage.preprocess.landmarks import choose_face, face_box_from_landmarks


@dataclass(frozen=True)
class Roi:
    """A square region around the mean of some landmarks, moved by ``offset`` (dx, dy) in
    inter-ocular distances (image axes: y down)."""

    name: str
    landmarks: tuple[int, ...]
    offset: tuple[float, float] = (0.0, 0.0)


# fmt: off
ROIS: tuple[Roi, ...] = (
    # eyebrows: outer end, middle, inner end; a little above the brow line (the skin it lifts)
    Roi("brow_l_outer",  (17,), (0.0, -0.08)),
    Roi("brow_l_mid",    (19,), (0.0, -0.08)),
    Roi("brow_l_inner",  (21,), (0.0, -0.08)),
    Roi("brow_r_inner",  (22,), (0.0, -0.08)),
    Roi("brow_r_mid",    (24,), (0.0, -0.08)),
    Roi("brow_r_outer",  (26,), (0.0, -0.08)),
    # lower eyelids: a little below the lid margin, clear of the eye itself
    Roi("lid_l_outer",   (41,), (0.0, 0.12)),
    Roi("lid_l_inner",   (40,), (0.0, 0.12)),
    Roi("lid_r_inner",   (47,), (0.0, 0.12)),
    Roi("lid_r_outer",   (46,), (0.0, 0.12)),
    # sides of the nose: the nasolabial area beside the wings
    Roi("nasolabial_l",  (31,), (-0.2, -0.05)),
    Roi("nasolabial_r",  (35,), (0.2, -0.05)),
    # mouth: corners, upper lip, lower lip
    Roi("mouth_corner_l", (48,)),
    Roi("mouth_corner_r", (54,)),
    Roi("lip_upper_l",   (50,)),
    Roi("lip_upper_r",   (52,)),
    Roi("lip_lower_l",   (58,)),
    Roi("lip_lower_r",   (56,)),
)
# fmt: on
NOSE = (27, 28, 29, 30)  # the nose bridge: the global-motion reference (squares of ROI_SIDE)
ROI_SIDE = 0.25  # side of every ROI square, inter-ocular distances
EYES = (tuple(range(36, 42)), tuple(range(42, 48)))  # the inter-ocular distance joins their centres
MAX_OVERHANG = 0.1  # how far (fraction of its side) the face box may leave the frame

# Farneback, on crops where the face is magnified about 3x (a 128-pixel camera frame):
# - the averaging window is 0.12 of the crop (31 pixels at 256, ~10 source pixels, about
#   the spacing of neighbouring ROIs): smaller windows let sensor noise through (measured
#   on the astronaut clips with noise of 1 grey level: still ROIs at 0.10 crop pixels on
#   average with 25 pixels, 0.08 with 31, 0.06 with 41) and underestimate shifts of the
#   nose bridge, which has little texture; larger ones blur neighbouring ROIs together;
# - 7-pixel polynomial neighbourhoods with sigma 1.5 (OpenCV's advice for smooth images);
# - a 3-level pyramid (halving) follows motions of tens of crop pixels, 3 iterations a level;
# - box windows: the Gaussian window option measured noisier here (0.35 vs 0.18 crop
#   pixels at the worst still ROI).
WINDOW = 0.12  # Farneback's window, fraction of the crop's side
FARNEBACK = dict(pyr_scale=0.5, levels=3, iterations=3, poly_n=7, poly_sigma=1.5, flags=0)


class FeatureError(Exception):
    """A clip whose flow features cannot be computed; the message is the reason."""


@dataclass(frozen=True)
class FlowFeatures:
    """One clip's flow features and what they were computed from."""

    features: np.ndarray  # [T, 18, 2] float32: per ROI (dx, dy), crop pixels, global motion removed
    box: Box  # the onset frame's crop box, source pixels
    landmarks: np.ndarray  # [68, 2] float32 (x, y) on the onset frame, source pixels
    drift: np.ndarray  # [T, 2] float32: the global shift removed per frame, crop pixels
    iterations: np.ndarray  # [T] int32: how many times each frame's crop box was moved (recomputed flows)
    faces: tuple[Detection, ...] = ()  # every detection on the onset frame, best score (the one used) first


def _to_crop(pts: np.ndarray, box: Box, crop_size: int) -> np.ndarray:
    """Source pixel coordinates -> crop pixel coordinates (pixel centres, as ``_crop`` maps)."""
    k = crop_size / box.width
    return (pts - (box.left, box.top) + 0.5) * k - 0.5


def _crop(frame: np.ndarray, scale: tuple[float, float], box: Box, offset: np.ndarray, crop_size: int) -> np.ndarray:
    """``box`` moved by ``offset`` (source pixels, sub-pixel) cut from ``frame`` and resized
    to ``crop_size``; ``frame`` is the source frame already resized by ``scale`` (x, y)
    where the crop shrinks the face (so that shrinking averages, as INTER_AREA does).
    Edge pixels are repeated where the box leaves the frame."""
    k = crop_size / box.width
    (sx, sy), (ox, oy) = scale, offset
    m = np.array([[k / sx, 0.0, (0.5 / sx - box.left - ox) * k - 0.5],
                  [0.0, k / sy, (0.5 / sy - box.top - oy) * k - 0.5]])
    return cv2.warpAffine(frame, m, (crop_size, crop_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _square(centre: np.ndarray, side: float, crop_size: int) -> tuple[slice, slice]:
    """Rows and columns of the square of ``side`` around ``centre`` (x, y), inside the crop."""
    x0, y0 = (int(round(c - side / 2)) for c in centre)
    s = max(1, int(round(side)))
    return slice(max(y0, 0), min(y0 + s, crop_size)), slice(max(x0, 0), min(x0 + s, crop_size))


def _regions(pts: np.ndarray, crop_size: int) -> tuple[list[tuple[slice, slice]], np.ndarray]:
    """The ROI squares and the nose mask, from landmarks in crop pixels."""
    iod = float(np.linalg.norm(pts[list(EYES[1])].mean(0) - pts[list(EYES[0])].mean(0)))
    side = ROI_SIDE * iod
    rois = [_square(pts[list(r.landmarks)].mean(0) + np.array(r.offset) * iod, side, crop_size) for r in ROIS]
    nose = np.zeros((crop_size, crop_size), bool)
    for i in NOSE:
        nose[_square(pts[i], side, crop_size)] = True
    return rois, nose


def _pool(flow: np.ndarray, region: tuple[slice, slice], top_fraction: float) -> np.ndarray:
    """The mean of the ``top_fraction`` largest-magnitude vectors of ``region``."""
    v = flow[region].reshape(-1, 2).astype(np.float64)
    n = max(1, int(round(top_fraction * len(v))))
    order = np.argsort(-np.hypot(v[:, 0], v[:, 1]), kind="stable")
    return v[order[:n]].mean(axis=0)


def _check_inside(pts: np.ndarray, box: Box, shape: tuple[int, int]) -> None:
    """FeatureError if a landmark is off the image or the box leaves it by more than
    ``MAX_OVERHANG`` of its side (a smaller overhang is filled by repeating edge pixels)."""
    h, w = shape
    if (pts < 0).any() or (pts[:, 0] > w - 1).any() or (pts[:, 1] > h - 1).any():
        raise FeatureError("landmarks outside the image")
    overhang = max(0, -box.left, -box.top, box.right - w, box.bottom - h)
    if overhang > MAX_OVERHANG * box.width:
        raise FeatureError(f"landmarks outside the image: the face box leaves the frame by {overhang} "
                           f"pixels (more than {MAX_OVERHANG:.0%} of its side)")


def _locate(gray: np.ndarray) -> tuple[np.ndarray, Box, tuple[Detection, ...]]:
    """Landmarks, crop box and every detection on the onset frame, or FeatureError."""
    try:
        choice = choose_face(gray)
    except FaceError as e:
        raise FeatureError(str(e)) from None
    box = face_box_from_landmarks(choice.landmarks, gray.shape)
    _check_inside(choice.landmarks, box, gray.shape)
    return choice.landmarks, box, choice.found


def clip_flow_features(frames: np.ndarray, onset: int = 0, crop_size: int = 256, top_fraction: float = 0.25,
                       max_iterations: int = 3, recrop_px: float = 0.5) -> FlowFeatures:
    """Flow features of one clip: ``frames`` [T, H, W] gray or [T, H, W, 3] RGB uint8 (the
    whole camera frames, at the stored frame rate), ``onset`` the reference frame.

    A frame's crop box starts where its neighbour's ended (the one nearer the onset: head
    motion is slow) and is moved by the measured global shift while that exceeds
    ``recrop_px`` crop pixels, at most ``max_iterations`` times. Raises ``FeatureError``."""
    if len(frames) < 2:
        raise FeatureError(f"clip too short: {len(frames)} frames")
    if not 0 <= onset < len(frames):
        raise ValueError(f"onset {onset} outside the clip's {len(frames)} frames")
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction: expected (0, 1], got {top_fraction}")
    gray = np.stack([as_gray(f) for f in frames])
    landmarks, box, faces = _locate(gray[onset])
    rois, nose = _regions(_to_crop(landmarks, box, crop_size), crop_size)
    winsize = int(round(WINDOW * crop_size)) | 1
    to_source = box.width / crop_size
    h, w = gray.shape[1:]
    if box.width > crop_size:  # the crop shrinks the face: shrink the frames once, by area
        gray = np.stack([cv2.resize(g, (round(w * crop_size / box.width), round(h * crop_size / box.width)),
                                    interpolation=cv2.INTER_AREA) for g in gray])
    scale = (gray.shape[2] / w, gray.shape[1] / h)

    reference = _crop(gray[onset], scale, box, np.zeros(2), crop_size)
    features = np.zeros((len(gray), len(ROIS), 2), np.float32)
    drift = np.zeros((len(gray), 2), np.float32)
    iterations = np.zeros(len(gray), np.int32)
    moved = np.zeros((len(gray), 2))  # each frame's box offset, source pixels
    for t in [*range(onset, len(gray)), *range(onset - 1, -1, -1)]:
        if t != onset:
            moved[t] = moved[t - 1 if t > onset else t + 1]
        while True:
            current = _crop(gray[t], scale, box, moved[t], crop_size)
            flow = cv2.calcOpticalFlowFarneback(reference, current, None, winsize=winsize, **FARNEBACK)
            shift = np.median(flow[nose], axis=0)
            if iterations[t] == max_iterations or np.hypot(*shift) <= recrop_px:
                break
            moved[t] += shift * to_source
            iterations[t] += 1
        flow -= shift
        drift[t] = moved[t] / to_source + shift
        features[t] = [_pool(flow, r, top_fraction) for r in rois]
    return FlowFeatures(features, box, landmarks, drift, iterations, faces)
