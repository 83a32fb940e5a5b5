"""Face choice by evidence, not size: on real photos with dlib's real detector and shape
predictor.

The scene is scikit-image's astronaut photo, grey, with a gamma of 1.2 (deterministic; no
file). On it dlib's HOG detector returns the face at score 1.55 (an 88-pixel box; 1.57 with
the clips' sensor noise) and a patch of the suit below it at score 0.02 that is 19 % wider
(105 pixels): the case where keeping the largest box cropped the suit. Clips are the photo
with only some part changing (the face's lip corners rising, with sensor noise; or only the
suit changing), so that a crop of a part that does not change is exactly still.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from storage.ingest import MOTIONLESS_CROP, IngestOptions, ingest
from storage.preprocess.face import Box, FaceError, detect_faces
from storage.preprocess.flow import ROIS
from storage.preprocess.landmarks import MAX_FOLLOW, choose_face, eye_follow
from storage.sources.frames import ClipSource
from storage.store import FrameStore

GAMMA = 1.2
FACE_ROWS = slice(0, 250)  # the head: the face box is rows 83-171, the suit patch's rows 330-435
SUIT_ROWS = slice(300, 512)
MOUTH_CORNERS = ((205.0, 142.0), (241.0, 142.0))  # (x, y) in the photo, placed by eye
LIP_PX = 2.0  # lip corners up at the last frame, photo pixels
N_FRAMES = 8
NAMES = [r.name for r in ROIS]
CORNERS = [NAMES.index("mouth_corner_l"), NAMES.index("mouth_corner_r")]


def photo() -> np.ndarray:
    """The astronaut photo, grey uint8 [512, 512], gamma 1.2."""
    from skimage import data

    gray = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    return np.clip(255 * (gray / 255.0) ** GAMMA, 0, 255).astype(np.uint8)


def _lips_up(img: np.ndarray, px: float) -> np.ndarray:
    """``img`` with the lip corners moved up by ``px`` (Gaussian-weighted, sigma 6 px)."""
    h, w = img.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    up = sum(np.exp(-((gx - x) ** 2 + (gy - y) ** 2) / np.float32(2 * 6.0 ** 2)) for x, y in MOUTH_CORNERS)
    map_y = (gy + np.float32(px) * up).astype(np.float32)
    return cv2.remap(img.astype(np.float32), gx, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def clip(moving: slice, lip_px: float = LIP_PX, n: int = N_FRAMES, seed: int = 0) -> np.ndarray:
    """[n, 512, 512] uint8: the photo, with the rows ``moving`` changing from frame to frame
    (lip corners rising linearly to ``lip_px`` at the last frame, sensor noise of 1 grey
    level) and every other row exactly as in the photo."""
    base = photo()
    rng = np.random.default_rng(seed)
    frames = np.repeat(base[None], n, axis=0)
    for t, a in enumerate(np.linspace(0.0, 1.0, n)):
        img = _lips_up(base, a * lip_px) + rng.normal(0.0, 1.0, base.shape)
        frames[t, moving] = np.clip(np.rint(img[moving]), 0, 255).astype(np.uint8)
    return frames


def _source(folder, frames: np.ndarray, clip_id: str) -> ClipSource:
    folder.mkdir(parents=True)
    paths = []
    for t, f in enumerate(frames):
        paths.append(folder / f"{t}.png")
        cv2.imwrite(str(paths[-1]), f)
    return ClipSource(clip_id, "test", "s1", "all", "happiness", 100.0, frame_paths=tuple(paths), onset=0,
                      apex=len(frames) - 1, offset=len(frames) - 1)


def _ingest(tmp_path, sources, **opts):
    return ingest(sources, tmp_path / "store", labels=["happiness"], workers=1,
                  options=IngestOptions(size=64, **opts))


def _centre(box: list[int]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _on_the_face(box: list[int]) -> bool:
    """Whether a box's centre is inside the detector's face box on the photo (179-267 x 83-171)."""
    x, y = _centre(box)
    return 179 <= x <= 267 and 83 <= y <= 171


def test_the_detector_also_finds_a_larger_patch_of_the_suit_at_a_lower_score():
    found = detect_faces(clip(FACE_ROWS)[0])
    assert len(found) == 2
    face, patch = found  # best score first
    assert _on_the_face(face.box.as_list()) and face.score > 1.3
    assert patch.box.top > 300 and 0 <= patch.score < 0.3  # the suit, just above the threshold
    assert patch.box.width >= 1.15 * face.box.width  # larger: what "the largest box" kept


@pytest.mark.parametrize("features", ["flow_roi", "none"])
def test_a_larger_false_positive_does_not_take_the_crop_and_the_report_lists_both(tmp_path, features):
    frames = clip(FACE_ROWS)
    rep = _ingest(tmp_path, [_source(tmp_path / "clip", frames, "c1")], features=features)
    assert rep.written == 1 and not rep.skipped, rep.skipped
    assert _on_the_face(rep.face_boxes["c1"])
    several = rep.several_faces["c1"]
    assert [_on_the_face(d["box"]) for d in several] == [True, False]  # the face first: the one used
    assert several[0]["score"] > 1.3 and 0 <= several[1]["score"] < 0.3
    assert json.loads(rep.path.read_text())["several_faces"]["c1"] == several
    # the stored crop is the moving face, not a still patch
    store = FrameStore(tmp_path / "store")
    stored = store.frames(0)
    assert (stored != stored[:1]).any()
    if features == "flow_roi":
        flow = store.features(0, "flow_roi")
        assert np.abs(flow).max() > 0
        assert (flow[-1, CORNERS, 1] < -1.0).all()  # the lip corners, upward (crop pixels)


@pytest.mark.parametrize("features", ["flow_roi", "none"])
def test_a_crop_that_is_still_while_the_frames_change_is_skipped_with_the_reason(tmp_path, features):
    moving_suit = _source(tmp_path / "suit", clip(SUIT_ROWS), "suit_moves")  # the face exactly still
    still = _source(tmp_path / "still", np.repeat(photo()[None], N_FRAMES, axis=0), "nothing_moves")
    rep = _ingest(tmp_path, [moving_suit, still], features=features)
    assert [s.item for s in rep.skipped] == ["suit_moves"]
    reason = rep.skipped[0].reason
    assert MOTIONLESS_CROP in reason and str(tmp_path / "suit") in reason
    assert "2 faces found" in reason and "score 1.5" in reason  # the detections it was chosen from
    assert rep.written == 1 and list(rep.face_boxes) == ["nothing_moves"]  # a still clip is data


def test_the_eyes_hold_on_faces_and_follow_the_box_on_textures():
    from skimage import data

    from storage.sources.synthetic.benchmark import SyntheticSpec, plan, render

    gray = photo()
    faces = [(gray, d.box) for d in detect_faces(gray)[:1]]
    for scale in (0.4, 0.7):  # smaller faces: 37- and 62-pixel boxes
        small_photo = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        faces.append((small_photo, detect_faces(small_photo)[0].box))
    spec = SyntheticSpec()  # the built-in benchmark's camera frames: the first clip of every subject
    first = {}
    for item in plan(spec):
        first.setdefault(item.subject_no, item)
    for item in first.values():
        frame = render(spec, item, keep=lambda n, fps: np.arange(1)).frames[0]  # only the first frame rendered
        faces.append((frame, detect_faces(frame)[0].box))
    textures = [(gray, detect_faces(gray)[1].box)]  # the suit patch the detector takes for a face
    for name, box in (("brick", Box(239, 192, 375, 328)), ("grass", Box(244, 210, 369, 335)),
                      ("gravel", Box(375, 111, 485, 221))):
        textures.append((getattr(data, name)(), box))
    held = [eye_follow(img, box) for img, box in faces]
    followed = [eye_follow(img, box) for img, box in textures]
    assert len(faces) >= 20
    assert max(held) <= MAX_FOLLOW < min(followed), (held, followed)
    assert min(followed) > 0.3  # a margin: measured 0.0 on every face here, 0.46-0.97 on these boxes


def test_a_clip_whose_only_face_is_a_patch_of_clothing_is_skipped_with_the_reason(tmp_path):
    from skimage import data

    suit = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)[290:470, 80:270]  # no face in it
    (patch,) = detect_faces(suit)
    assert patch.score > 0  # the detector's own threshold keeps it
    with pytest.raises(FaceError, match="is not a face: its landmarks do not hold"):
        choose_face(suit)
    rng = np.random.default_rng(1)
    frames = np.clip(suit[None] + rng.normal(0, 1.0, (N_FRAMES, *suit.shape)), 0, 255).astype(np.uint8)
    rep = _ingest(tmp_path, [_source(tmp_path / "suit", frames, "suit")])
    assert rep.written == 0 and [s.item for s in rep.skipped] == ["suit"]
    assert "is not a face: its landmarks do not hold" in rep.skipped[0].reason
    assert "0.png" in rep.skipped[0].reason  # the onset frame it was judged on


def test_orch_ingest_prints_every_detection_of_a_clip_with_several_faces(tmp_path):
    from typer.testing import CliRunner

    from orchestrator.cli import app

    _source(tmp_path / "data" / "c1", clip(FACE_ROWS), "c1")
    (tmp_path / "data" / "manifest.csv").write_text("path,subject,label,fps\nc1,s1,happiness,100\n")
    out = tmp_path / "store"
    r = CliRunner().invoke(app, ["ingest", str(tmp_path / "data" / "manifest.csv"), "--format", "manifest",
                                 "--out", str(out), "--size", "32", "--workers", "1", "--strict"])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())  # rich wraps long lines
    assert "several faces found: the best-scoring one used (1 clips)" in said
    assert "[179, 83, 267, 171] score 1.5" in said and "[123, 330, 228, 435] score 0.0" in said
    assert "1 clips written, 0 skipped" in said
