"""Flow features on clips rendered from the astronaut photo: motion where it was injected,
global head motion removed, bit-identical reruns, and the clips that cannot be measured.

Clips are camera-like (128 x 128, the face box spanning 3/4 of the width, as
``CAMERA_SPEC``), rendered at twice the size and area-downsampled, with sensor noise of 1
grey level. Head motion is an exact sub-pixel translation (a Fourier phase shift), so that
what remains after compensation is the method's error, not the renderer's interpolation.
Features are in crop pixels: the 88-pixel face box is magnified to 256, about 2.9 crop
pixels per frame pixel.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from storage.preprocess import landmarks
from storage.preprocess.flow import ROIS, FeatureError, clip_flow_features
from storage.sources.synthetic.face import face_affine, photo_gray, point_px

SIZE, FACE_VIEW, SIGMA = 128, 0.75, 0.07  # CAMERA_SPEC's frames; the benchmark's deformation width
RENDER = 2 * SIZE
N_FRAMES = 30
LIP_PX = 1.5  # lip corners up at apex, frame pixels
HEAD_PX = (2.5, -1.5)  # head translation at the last frame, frame pixels

NAMES = [r.name for r in ROIS]
CORNERS = [NAMES.index("mouth_corner_l"), NAMES.index("mouth_corner_r")]
STILL = [i for i, n in enumerate(NAMES) if n.startswith(("brow", "lid"))]


def _translate(img: np.ndarray, dx: float, dy: float, pad: int = 32) -> np.ndarray:
    """``img`` moved by (dx, dy) pixels, exactly (Fourier phase shift; edges reflected)."""
    p = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    fy, fx = np.fft.fftfreq(p.shape[0])[:, None], np.fft.fftfreq(p.shape[1])[None, :]
    moved = np.fft.ifft2(np.fft.fft2(p) * np.exp(-2j * np.pi * (fx * dx + fy * dy))).real
    return moved[pad:-pad, pad:-pad].astype(np.float32)


def render(lip_px: float = LIP_PX, head_px: tuple[float, float] = (0.0, 0.0), place: tuple[float, float] = (0.0, 0.0),
           n: int = N_FRAMES, noise: float = 1.0, seed: int = 0) -> np.ndarray:
    """[n, 128, 128] uint8: the lip corners rise by ``lip_px`` and the head moves by
    ``head_px``, both linearly from frame 0 to the last; the face is placed ``place`` frame
    pixels from the centre."""
    k = RENDER / SIZE
    face = cv2.warpAffine(photo_gray(), face_affine(RENDER, FACE_VIEW, shift_px=(place[0] * k, place[1] * k)),
                          (RENDER, RENDER), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    gx, gy = np.meshgrid(np.arange(RENDER, dtype=np.float32), np.arange(RENDER, dtype=np.float32))
    up = np.zeros_like(gy)  # upward displacement, as benchmark._deformation builds it
    s = SIGMA * RENDER * FACE_VIEW
    for corner in ("mouth_corner_l", "mouth_corner_r"):
        px, py = point_px(corner, RENDER, FACE_VIEW)
        up += np.exp(-((gx - px - place[0] * k) ** 2 + (gy - py - place[1] * k) ** 2) / (2 * s * s))
    up *= lip_px * k / up.max()
    rng = np.random.default_rng(seed)
    frames = np.empty((n, SIZE, SIZE), np.uint8)
    for t, a in enumerate(np.linspace(0.0, 1.0, n, dtype=np.float32)):
        img = cv2.remap(face, gx, gy + a * up, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        img = _translate(img, a * head_px[0] * k, a * head_px[1] * k)
        small = cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        frames[t] = np.clip(np.rint(small + rng.normal(0.0, noise, small.shape)), 0, 255)
    return frames


@pytest.fixture(scope="module")
def lips():
    return clip_flow_features(render())


@pytest.fixture(scope="module")
def head_clip():
    return render(head_px=HEAD_PX)


@pytest.fixture(scope="module")
def head(head_clip):
    return clip_flow_features(head_clip)


def _magnitude(features: np.ndarray) -> np.ndarray:
    return np.linalg.norm(features, axis=-1)


def test_lip_corner_motion_lands_in_the_mouth_corner_rois(lips):
    assert lips.features.shape == (N_FRAMES, 18, 2) and lips.features.dtype == np.float32
    assert lips.landmarks.shape == (68, 2) and lips.drift.shape == (N_FRAMES, 2)
    crop_per_px = 256 / lips.box.width
    mag = _magnitude(lips.features)
    assert mag[0].max() < 1e-3  # the onset against itself
    # 1.5 frame px = ~4.4 crop px at the corner point; the ROI's top quarter averages ~3.8
    assert set(np.argsort(-mag[-1])[:2]) == set(CORNERS)
    assert (mag[-1, CORNERS] > 0.7 * LIP_PX * crop_per_px).all()
    assert (lips.features[-1, CORNERS, 1] < -3.0).all()  # upward
    assert (np.abs(lips.features[-1, CORNERS, 0]) < 0.5).all()
    # brows and lids, far from the mouth: sensor noise only (measured: max 0.18, mean 0.08;
    # up to 0.27 with other noise seeds)
    assert mag[:, STILL].max() < 0.3
    assert mag[:, STILL].mean() < 0.15
    assert (lips.iterations == 0).all() and np.abs(lips.drift).max() < 0.2


def test_global_head_shift_is_removed(head, lips):
    crop_per_px = 256 / head.box.width
    # the shift found is the one injected (measured error 0.12 crop px, most of it the lip
    # motion reaching the nose bridge: 0.09 without head motion)
    np.testing.assert_allclose(head.drift[-1], np.array(HEAD_PX) * crop_per_px, atol=0.15)
    assert head.iterations.sum() > 0  # the crop box followed the head
    mag = _magnitude(head.features)
    # residual in the ROIs that did not move, every frame: measured max 0.29 crop px
    # (0.10 frame px), mean 0.10 crop px (the noise floor without head motion: 0.18 and
    # 0.08); so the issue's < 0.2 px holds for every ROI and frame in frame pixels, and on
    # average in crop pixels
    assert mag[:, STILL].max() < 0.35
    assert mag[:, STILL].max() / crop_per_px < 0.2
    assert mag[:, STILL].mean() < 0.15
    # the lip motion is measured as without head motion
    assert set(np.argsort(-mag[-1])[:2]) == set(CORNERS)
    np.testing.assert_allclose(head.features[-1, CORNERS], lips.features[-1, CORNERS], atol=0.3)


def test_same_frames_same_features_bit_for_bit(head, head_clip):
    again = clip_flow_features(head_clip.copy())
    assert again.features.tobytes() == head.features.tobytes()
    assert again.drift.tobytes() == head.drift.tobytes()
    assert np.array_equal(again.iterations, head.iterations) and again.box == head.box


@pytest.mark.parametrize("frames,reason", [
    (np.full((5, SIZE, SIZE), 128, np.uint8), "no face found on the onset frame"),
    (render(n=1), "clip too short: 1 frames"),
    (render(n=3, place=(0.0, 40.0)), "landmarks outside the image"),  # chin below the frame
])
def test_clips_that_cannot_be_measured_say_why(frames, reason):
    with pytest.raises(FeatureError, match=f"^{reason}"):
        clip_flow_features(frames)


def test_a_missing_landmark_model_names_its_package(monkeypatch):
    monkeypatch.setattr(landmarks.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="face-recognition-models"):
        landmarks.model_path()


def test_the_store_schema_has_one_vector_per_roi():
    from storage.ingest import FLOW_SHAPE
    from storage.preprocess.flow import ROIS

    assert FLOW_SHAPE == (len(ROIS), 2) == (18, 2)
    assert len({r.name for r in ROIS}) == 18
