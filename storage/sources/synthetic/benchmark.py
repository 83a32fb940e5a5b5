"""The built-in synthetic micro-expression benchmark, deterministic from its spec.

Clips are rendered from a real face photo with per-subject identity (scale, rotation,
position, brightness/contrast, a mild shape warp, expressivity), per-class AU-like local
deformations of sub-pixel to ~2 px under an onset->apex->offset envelope, slow head drift
and sensor noise; at DFME's 200/300/500 fps by default (``fps_choices=(30,)`` gives
CAS(ME)^3-like clips). Subjects are disjoint across the train / test_A / test_B splits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from storage.sources.synthetic.expressions import CLASS_WEIGHTS, DFME_CLASSES, EXPRESSIONS, envelope
from storage.sources.synthetic.face import face_affine, photo_gray, point_px
from storage.store import Clip, FrameStore, StoreError, StoreWriter

DATASET = "synthetic"
SPLITS = ("train", "test_A", "test_B")


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything the benchmark depends on. The defaults are the built-in benchmark."""

    seed: int = 0
    size: int = 48  # stored frames are size x size grayscale
    subjects: dict[str, int] = field(default_factory=lambda: {"train": 16, "test_A": 6, "test_B": 6})
    clips_per_subject: int = 9
    fps_choices: tuple[int, ...] = (200, 300, 500)
    duration_s: tuple[float, float] = (0.28, 0.32)
    amplitude_px: tuple[float, float] = (0.6, 2.0)  # largest displacement at apex, stored pixels
    drift_px: float = 0.3  # largest head drift over a clip, stored pixels
    noise: float = 1.0  # sensor noise, grey levels (std)
    sigma: float = 0.07  # spatial extent of a deformation, face-box units
    pulse: tuple[float, float] = (0.15, 0.22)  # width of each pulse of a double, fraction of the motion
    # fraction of the frame's width the face box spans: 1.0 is a tight face crop (the
    # built-in benchmark); less shows the photo around the face, as raw camera frames do
    # (the dataset layouts use it, so that ingest's face detector has a face to find)
    face_view: float = 1.0

    def digest(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def n_clips(self) -> int:
        return sum(self.subjects.values()) * self.clips_per_subject


def _class_counts(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` labels in the benchmark's proportions, every class at least once (n >= 7)."""
    w = np.array([CLASS_WEIGHTS[c] for c in DFME_CLASSES])
    raw = w / w.sum() * n
    counts = np.maximum(np.floor(raw).astype(int), 1 if n >= len(w) else 0)
    while counts.sum() < n:
        counts[np.argmax(raw - counts)] += 1
    while counts.sum() > n:
        counts[np.argmax(counts)] -= 1
    labels = [c for c, k in zip(DFME_CLASSES, counts) for _ in range(k)]
    rng.shuffle(labels)
    return labels


class _Subject:
    """A synthetic person: the face photo under an identity transform."""

    def __init__(self, spec: SyntheticSpec, rng: np.random.Generator):
        r = 2 * spec.size  # render at twice the stored size, then area-downsample
        self.render = r
        m = face_affine(r, scale=rng.uniform(0.92, 1.08) * spec.face_view, angle_deg=rng.uniform(-4, 4),
                        shift_px=tuple(rng.uniform(-0.03, 0.03, 2) * r))
        img = cv2.warpAffine(photo_gray(), m, (r, r), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
        # a mild, smooth shape warp (~2% of the face) that makes each identity its own
        coarse = rng.normal(0.0, 0.02 * r, size=(4, 4, 2)).astype(np.float32)
        warp = cv2.resize(coarse, (r, r), interpolation=cv2.INTER_CUBIC)
        gx, gy = np.meshgrid(np.arange(r, dtype=np.float32), np.arange(r, dtype=np.float32))
        img = cv2.remap(img, gx + warp[..., 0], gy + warp[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        contrast, brightness = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
        self.image = np.clip((img - 128.0) * contrast + 128.0 + brightness, 0, 255).astype(np.float32)
        self.grid = (gx, gy)
        self.expressivity = rng.uniform(0.8, 1.2)


def _deformation(expression: str, render: int, sigma: float, face_view: float = 1.0) -> np.ndarray:
    """Displacement field [render, render, 2] of an expression, scaled so that its largest
    displacement is 1 (``amplitude_px`` is then the largest displacement at apex)."""
    gx, gy = np.meshgrid(np.arange(render, dtype=np.float32), np.arange(render, dtype=np.float32))
    s = sigma * render * face_view
    field_ = np.zeros((render, render, 2), np.float32)
    for mv in EXPRESSIONS[expression].movements:
        px, py = point_px(mv.point, render, face_view)
        g = np.exp(-((gx - px) ** 2 + (gy - py) ** 2) / (2 * s * s))
        field_[..., 0] += mv.direction[0] * g
        field_[..., 1] += mv.direction[1] * g
    return field_ / np.linalg.norm(field_, axis=-1).max()


def render_clip(subject: _Subject, expression: str, spec: SyntheticSpec,
                rng: np.random.Generator, fps: float, n_frames: int | None = None) -> tuple[np.ndarray, int]:
    """Frames [T, size, size] uint8 at ``fps`` and the apex frame index. ``n_frames`` fixes
    the length (default: a duration drawn from ``spec.duration_s``)."""
    r = subject.render
    duration = rng.uniform(*spec.duration_s)
    n = n_frames if n_frames is not None else max(2, int(round(duration * fps)))
    t = np.linspace(0.0, 1.0, n)
    env = envelope(EXPRESSIONS[expression].dynamics, t, rng, spec.pulse)
    amp = rng.uniform(*spec.amplitude_px) * subject.expressivity * (r / spec.size)
    field_ = _deformation(expression, r, spec.sigma, spec.face_view) * amp
    # slow head drift: a linear walk plus a gentle sway, at most drift_px stored pixels
    d = spec.drift_px * (r / spec.size)
    lin = rng.uniform(-0.7, 0.7, 2) * d
    sway = rng.uniform(-0.3, 0.3, 2) * d
    phase = rng.uniform(0, 2 * np.pi)
    gx, gy = subject.grid
    frames = np.empty((n, spec.size, spec.size), np.uint8)
    for k in range(n):
        dx = env[k] * field_[..., 0] + lin[0] * t[k] + sway[0] * np.sin(2 * np.pi * t[k] + phase)
        dy = env[k] * field_[..., 1] + lin[1] * t[k] + sway[1] * np.sin(2 * np.pi * t[k] + phase)
        warped = cv2.remap(subject.image, (gx - dx).astype(np.float32), (gy - dy).astype(np.float32),
                           cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        small = cv2.resize(warped, (spec.size, spec.size), interpolation=cv2.INTER_AREA)
        small += rng.normal(0.0, spec.noise, small.shape).astype(np.float32)
        frames[k] = np.clip(np.rint(small), 0, 255)
    return frames, int(np.argmax(env))


def generate(spec: SyntheticSpec = SyntheticSpec()) -> Iterator[Clip]:
    """Yield the benchmark's clips, in a fixed order, deterministically from ``spec``."""
    subject_no = 0
    for split in SPLITS:
        n_subjects = spec.subjects.get(split, 0)
        labels = _class_counts(n_subjects * spec.clips_per_subject,
                               np.random.default_rng([spec.seed, SPLITS.index(split), 0]))
        for s in range(n_subjects):
            subject_no += 1
            subject = _Subject(spec, np.random.default_rng([spec.seed, subject_no, 1]))
            for k in range(spec.clips_per_subject):
                label = labels[s * spec.clips_per_subject + k]
                rng = np.random.default_rng([spec.seed, subject_no, 2, k])
                fps = float(rng.choice(spec.fps_choices))
                frames, apex = render_clip(subject, label, spec, rng, fps)
                yield Clip(
                    clip_id=f"sub{subject_no:02d}_{k:02d}", dataset=DATASET,
                    subject=f"sub{subject_no:02d}", split=split, label=label,
                    source_fps=fps, frames=frames, onset=0, apex=apex, offset=len(frames) - 1,
                )


def write_store(spec: SyntheticSpec, path: str | Path, overwrite: bool = False,
                progress: Callable[[int, int], None] | None = None) -> Path:
    """Render the benchmark into a frame store at ``path`` (atomically)."""
    path = Path(path)
    meta = {"synthetic_spec": json.dumps(asdict(spec), sort_keys=True)}
    with StoreWriter(path, labels=DFME_CLASSES, frame_shape=(spec.size, spec.size),
                     metadata=meta, overwrite=overwrite) as writer:
        for i, clip in enumerate(generate(spec), 1):
            writer.add(clip)
            if progress:
                progress(i, spec.n_clips)
    return path


def cached_store_path(spec: SyntheticSpec, cache_dir: str | Path) -> Path:
    """Where ``ensure_store`` keeps the store of ``spec``."""
    return Path(cache_dir) / f"synthetic-{spec.digest()}"


def ensure_store(spec: SyntheticSpec, cache_dir: str | Path,
                 progress: Callable[[int, int], None] | None = None) -> tuple[Path, bool]:
    """The benchmark's store under ``cache_dir``, built once per spec.

    Returns ``(path, built)``; ``built`` is False when a cached store was reused.
    """
    path = cached_store_path(spec, cache_dir)
    if path.exists():
        FrameStore(path)  # raises StoreError if it is not a readable store
        return path, False
    try:
        write_store(spec, path, progress=progress)
    except StoreError:
        if path.exists():  # another process built it meanwhile
            FrameStore(path)
            return path, False
        raise
    return path, True
