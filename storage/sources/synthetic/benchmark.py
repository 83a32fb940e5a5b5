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
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from storage.sources.synthetic.expressions import (CLASS_WEIGHTS, DFME_CLASSES, EXPRESSIONS, TWITCH_GAIN, Movement,
                                                   envelope, motion_span, twitch)
from storage.sources.synthetic.face import face_affine, photo_gray, point_px
from storage.ingest import IngestOptions, prepare_clip
from storage.preprocess.face import FaceError
from storage.preprocess.landmarks import choose_face
from storage.preprocess.temporal import resample_indices
from storage.sources.casme3 import EMOTIONS_7
from storage.sources.frames import ClipError
from storage.store import Clip, FrameStore, StoreError, StoreWriter

DATASET = "synthetic"
# bump when rendering or the per-clip pipeline (crop, landmarks, flow) changes what a spec builds
BUILD_VERSION = 3
SPLITS = ("train", "test_A", "test_B")
# CAS(ME)^3 emotions -> the synthetic expression rendered for them, and back
CASME3_TO_SYNTHETIC = {"happy": "happiness", "anger": "anger", "fear": "fear", "disgust": "disgust",
                       "surprise": "surprise", "sad": "sadness", "others": "contempt"}
SYNTHETIC_TO_CASME3 = {v: k for k, v in CASME3_TO_SYNTHETIC.items()}
LABEL_SETS = {"dfme": DFME_CLASSES, "casme3": EMOTIONS_7}
# DFME-like imbalance for the DFME-size preset: disgust most frequent, contempt rarest (~5:1)
DFME_WEIGHTS = {
    "anger": 0.08, "contempt": 0.05, "disgust": 0.26, "fear": 0.13,
    "happiness": 0.15, "sadness": 0.11, "surprise": 0.22,
}
WEIGHTS = {"benchmark": CLASS_WEIGHTS, "dfme": DFME_WEIGHTS}


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything the benchmark depends on. The defaults are the built-in benchmark."""

    seed: int = 0
    size: int = 48  # stored frames are size x size grayscale
    # test_B is the ablation's test set: 12 subjects (108 clips), so that a class of 6 % is
    # more than a handful of clips and the seeds' scores are not dominated by a few of them
    subjects: dict[str, int] = field(default_factory=lambda: {"train": 16, "test_A": 6, "test_B": 12})
    clips_per_subject: int = 9
    # total clips per split, spread over its subjects as evenly as possible (instead of
    # ``clips_per_subject`` each) — the DFME-size preset's exact split sizes
    clips: dict[str, int] | None = None
    # class proportions: "benchmark" (expressions.CLASS_WEIGHTS) or "dfme" (DFME_WEIGHTS)
    class_weights: str = "benchmark"
    fps_choices: tuple[int, ...] = (200, 300, 500)
    # 0.32-0.64 s: 32-64 frames at 100 fps, long enough that 16 evenly spaced frames step
    # over the briefest movements (expressions.py) that all frames see
    duration_s: tuple[float, float] = (0.32, 0.64)
    amplitude_px: tuple[float, float] = (0.6, 2.0)  # largest displacement at apex, stored pixels
    drift_px: float = 0.3  # largest head drift over a clip, stored pixels
    noise: float = 1.0  # sensor noise, grey levels (std)
    sigma: float = 0.07  # spatial extent of a deformation, face-box units
    # fraction of the frame's width the face box spans: 1.0 is a tight face crop (the
    # built-in benchmark); less shows the photo around the face, as raw camera frames do
    # (the dataset layouts use it, so that ingest's face detector has a face to find)
    face_view: float = 1.0
    # N > 0 (the built-in benchmark): camera-like N x N frames (face spanning
    # ``camera_view`` of the width), put through ingest's own per-clip pipeline — 68
    # landmarks, the face crop (stored at ``size``) and the optical-flow ROI features.
    # 0: frames rendered directly as ``size`` x ``size`` face crops, no features (quick; the
    # pixel token only). Amplitudes and drift stay in units of a ``size``-pixel face box.
    camera: int = 128
    camera_view: float = 0.75
    # camera mode: the flow's face-crop side. 128, not ingest's 256: the rendered face is
    # ~100 pixels wide, so upsampling it to 256 adds no detail, and the flow costs 4x less
    flow_size: int = 128
    # the label names stored: "dfme" (DFME's seven classes) or "casme3" (the same
    # expressions under CAS(ME)^3's seven emotion names, contempt rendered as "others") —
    # a CAS(ME)^3-like store, e.g. ``subjects={"all": 12}`` for LOSO
    labels: str = "dfme"
    # non-empty: each clip's duration (s) is drawn from these values (an empirical length
    # distribution, e.g. a real sheet's onset..offset spans / fps) instead of from duration_s
    durations_from: tuple[float, ...] = ()

    def __post_init__(self):
        if self.labels not in LABEL_SETS:
            raise ValueError(f"labels: expected one of {sorted(LABEL_SETS)}, got {self.labels!r}")
        if self.class_weights not in WEIGHTS:
            raise ValueError(f"class_weights: expected one of {sorted(WEIGHTS)}, got {self.class_weights!r}")
        for split, n in (self.clips or {}).items():
            if split not in self.subjects or n < self.subjects[split]:
                raise ValueError(f"clips[{split!r}]: {n} clips need a split of at most {n} subjects "
                                 f"(subjects: {self.subjects})")

    def split_clips(self, split: str) -> int:
        """How many clips the split holds."""
        if self.clips is not None and split in self.clips:
            return self.clips[split]
        return self.subjects[split] * self.clips_per_subject

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """The store's label vocabulary."""
        return LABEL_SETS[self.labels]

    @property
    def frame_size(self) -> int:
        """The size frames are rendered at."""
        return self.camera or self.size

    @property
    def view(self) -> float:
        """The fraction of the rendered frame the face box spans."""
        return self.camera_view if self.camera else self.face_view

    def digest(self) -> str:
        """Names the spec's store in the cache; ``BUILD_VERSION`` is part of it, so a change of
        how clips are rendered or processed never reuses an old store."""
        blob = json.dumps({"spec": asdict(self), "build": BUILD_VERSION}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def n_clips(self) -> int:
        return sum(self.split_clips(s) for s in self.subjects)


def _class_counts(n: int, rng: np.random.Generator, weights: str = "benchmark") -> list[str]:
    """``n`` labels in the proportions ``weights`` names, every class at least once (n >= 7)."""
    w = np.array([WEIGHTS[weights][c] for c in DFME_CLASSES])
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
        r = 2 * spec.frame_size  # render at twice the frame size, then area-downsample
        self.render = r
        m = face_affine(r, scale=rng.uniform(0.92, 1.08) * spec.view, angle_deg=rng.uniform(-4, 4),
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


def _deformation(movements: str | tuple[Movement, ...], render: int, sigma: float,
                 face_view: float = 1.0) -> np.ndarray:
    """Displacement field [render, render, 2] of an expression's movements (or of the named
    expression's main movements), scaled so that its largest displacement is 1
    (``amplitude_px`` is then the largest displacement at apex)."""
    if isinstance(movements, str):
        movements = EXPRESSIONS[movements].movements
    gx, gy = np.meshgrid(np.arange(render, dtype=np.float32), np.arange(render, dtype=np.float32))
    s = sigma * render * face_view
    field_ = np.zeros((render, render, 2), np.float32)
    for mv in movements:
        px, py = point_px(mv.point, render, face_view)
        g = np.exp(-((gx - px) ** 2 + (gy - py) ** 2) / (2 * s * s))
        field_[..., 0] += mv.direction[0] * g
        field_[..., 1] += mv.direction[1] * g
    return field_ / np.linalg.norm(field_, axis=-1).max()


def render_clip(subject: _Subject, expression: str, spec: SyntheticSpec,
                rng: np.random.Generator, fps: float, n_frames: int | None = None,
                keep: Callable[[int], np.ndarray] | None = None) -> tuple[np.ndarray, int, int]:
    """Frames [T, frame_size, frame_size] uint8 at ``fps``, the apex frame index and the
    clip's length T. ``n_frames`` fixes the length (default: a duration drawn from
    ``spec.duration_s``); ``keep(T)`` renders only those frames (their noise is drawn in
    order, so it differs from a full render's)."""
    r = subject.render
    duration = rng.choice(spec.durations_from) if spec.durations_from else rng.uniform(*spec.duration_s)
    n = n_frames if n_frames is not None else max(2, int(round(duration * fps)))
    t = np.linspace(0.0, 1.0, n)
    t_s = np.arange(n) / fps  # the expression's dynamics are in seconds
    span = motion_span((n - 1) / fps, rng)
    expr = EXPRESSIONS[expression]
    env = envelope(expr.dynamics, t_s, rng, span)
    scale = spec.view * r / spec.size  # pixels of the render per pixel of a size-wide face box
    amp = rng.uniform(*spec.amplitude_px) * subject.expressivity * scale
    field_ = _deformation(expr.movements, r, spec.sigma, spec.view) * amp
    if expr.twitch:
        brief = twitch(t_s, rng, span)
        twitch_field = _deformation(expr.twitch, r, spec.sigma, spec.view) * amp * TWITCH_GAIN
    else:
        brief, twitch_field = np.zeros(n), None
    # slow head drift: a linear walk plus a gentle sway, at most drift_px stored pixels
    d = spec.drift_px * scale
    lin = rng.uniform(-0.7, 0.7, 2) * d
    sway = rng.uniform(-0.3, 0.3, 2) * d
    phase = rng.uniform(0, 2 * np.pi)
    gx, gy = subject.grid
    size = spec.frame_size
    rendered = range(n) if keep is None else keep(n)
    frames = np.empty((len(rendered), size, size), np.uint8)
    for j, k in enumerate(rendered):
        dx = env[k] * field_[..., 0] + lin[0] * t[k] + sway[0] * np.sin(2 * np.pi * t[k] + phase)
        dy = env[k] * field_[..., 1] + lin[1] * t[k] + sway[1] * np.sin(2 * np.pi * t[k] + phase)
        if brief[k] > 0:
            dx = dx + brief[k] * twitch_field[..., 0]
            dy = dy + brief[k] * twitch_field[..., 1]
        warped = cv2.remap(subject.image, (gx - dx).astype(np.float32), (gy - dy).astype(np.float32),
                           cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        small = cv2.resize(warped, (size, size), interpolation=cv2.INTER_AREA)
        small += rng.normal(0.0, spec.noise, small.shape).astype(np.float32)
        frames[j] = np.clip(np.rint(small), 0, 255)
    return frames, int(np.argmax(env + brief)), n


@dataclass(frozen=True)
class PlannedClip:
    """One clip of the benchmark before rendering."""

    split: str
    subject_no: int
    k: int  # the clip's number within its subject
    label: str

    @property
    def clip_id(self) -> str:
        return f"sub{self.subject_no:02d}_{self.k:02d}"

    @property
    def subject(self) -> str:
        return f"sub{self.subject_no:02d}"


def plan(spec: SyntheticSpec) -> list[PlannedClip]:
    """The benchmark's clips in their fixed order: splits, then subjects, then clips."""
    out, subject_no = [], 0
    extra = [s for s in spec.subjects if s not in SPLITS]  # e.g. "all" (a LOSO store)
    for split in [*(s for s in SPLITS if s in spec.subjects), *extra]:
        n_subjects, n_clips = spec.subjects[split], spec.split_clips(split)
        labels = _class_counts(n_clips, np.random.default_rng([spec.seed, (SPLITS + tuple(extra)).index(split), 0]),
                               spec.class_weights)
        start = 0
        for s in range(n_subjects):
            subject_no += 1
            k_clips = n_clips // n_subjects + (s < n_clips % n_subjects)
            out += [PlannedClip(split, subject_no, k, labels[start + k]) for k in range(k_clips)]
            start += k_clips
    return out


_last_subject: dict[tuple[str, int], _Subject] = {}


MAX_IDENTITY_DRAWS = 10


def _subject(spec: SyntheticSpec, subject_no: int) -> _Subject:
    """The subject's identity, kept while its clips are rendered one after another.

    Camera mode: every clip goes through ingest's face choice on its onset frame, so an
    identity on one of whose clips' onset frames the detector misses the face, or the
    landmarks do not hold (about 1 in 100 of the random warps and poses), is drawn again —
    deterministically (draw k > 0 from its own stream), so a spec always gives the same
    subjects, and draw 0 is the identity it always was."""
    key = (spec.digest(), subject_no)
    if key not in _last_subject:
        _last_subject.clear()
        items = [i for i in plan(spec) if i.subject_no == subject_no] if spec.camera else []
        for draw in range(MAX_IDENTITY_DRAWS):
            rng = np.random.default_rng([spec.seed, subject_no, 1] + ([draw] if draw else []))
            subject = _Subject(spec, rng)
            if all(_face_found(spec, subject, item) for item in items):
                break
        else:
            raise StoreError(f"synthetic subject {subject_no}: no identity in {MAX_IDENTITY_DRAWS} draws whose every "
                             f"onset frame passes ingest's face choice")
        _last_subject[key] = subject
    return _last_subject[key]


def _clip_stream(spec: SyntheticSpec, item: PlannedClip) -> tuple[np.random.Generator, float]:
    """The clip's random stream and its frame rate (its first draw)."""
    rng = np.random.default_rng([spec.seed, item.subject_no, 2, item.k])
    return rng, float(rng.choice(spec.fps_choices))


def _face_found(spec: SyntheticSpec, subject: _Subject, item: PlannedClip) -> bool:
    """Whether ingest's face choice takes the clip's onset frame (rendered alone: every random
    draw before its noise is the same as in the whole clip's render, so it is that frame)."""
    rng, fps = _clip_stream(spec, item)
    onset, _, _ = render_clip(subject, item.label, spec, rng, fps, keep=lambda n: np.array([0]))
    try:
        choose_face(onset[0])
    except FaceError:
        return False
    return True


def render(spec: SyntheticSpec, item: PlannedClip, keep: Callable[[int], np.ndarray] | None = None) -> Clip:
    """One planned clip, rendered (only frames ``keep(T)`` if given)."""
    rng, fps = _clip_stream(spec, item)
    frames, apex, n = render_clip(_subject(spec, item.subject_no), item.label, spec, rng, fps,
                                  keep=None if keep is None else lambda t: keep(t, fps))
    label = item.label if spec.labels == "dfme" else SYNTHETIC_TO_CASME3[item.label]
    return Clip(clip_id=item.clip_id, dataset=DATASET, subject=item.subject, split=item.split,
                label=label, source_fps=fps, frames=frames, onset=0, apex=apex, offset=n - 1,
                source_frames=None if keep is None else n)


def generate(spec: SyntheticSpec = SyntheticSpec()) -> Iterator[Clip]:
    """Yield the benchmark's clips as rendered (every source frame), in a fixed order,
    deterministically from ``spec``."""
    for item in plan(spec):
        yield render(spec, item)


def _kept(n: int, fps: float) -> np.ndarray:
    return resample_indices(n, fps)


def build_clip(spec: SyntheticSpec, item: PlannedClip) -> Clip:
    """A clip as the store holds it. Camera mode: only the frames kept at 100 fps are
    rendered, then ingest's per-clip pipeline crops them and computes the flow features."""
    if not spec.camera:
        return render(spec, item)
    cv2.setNumThreads(1)
    clip = render(spec, item, keep=_kept)
    try:
        got = prepare_clip(clip.frames, 0, IngestOptions(size=spec.size, features="flow_roi",
                                                           flow_size=spec.flow_size))
    except ClipError as e:
        raise StoreError(f"synthetic clip {clip.clip_id}: {e}; the benchmark needs every clip") from None
    clip.frames, clip.features = got.frames, got.features
    return clip


def _build_subject(spec: SyntheticSpec, items: list[PlannedClip]) -> list[Clip]:
    return [build_clip(spec, item) for item in items]


def write_store(spec: SyntheticSpec, path: str | Path, overwrite: bool = False,
                progress: Callable[[int, int], None] | None = None, workers: int | None = None) -> Path:
    """Render the benchmark into a frame store at ``path`` (atomically); camera-mode clips are
    built in ``workers`` spawned processes (default: all cores), a subject per task."""
    path = Path(path)
    meta = {"synthetic_spec": json.dumps(asdict(spec), sort_keys=True)}
    features = IngestOptions(features="flow_roi").feature_shapes if spec.camera else {}
    items = plan(spec)
    by_subject = [[i for i in items if i.subject_no == s] for s in sorted({i.subject_no for i in items})]
    workers = max(1, workers or (os.cpu_count() or 1)) if spec.camera else 1
    with StoreWriter(path, labels=spec.vocabulary, frame_shape=(spec.size, spec.size), metadata=meta,
                     overwrite=overwrite, features=features) as writer:
        pool = None
        if workers > 1:
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            batches = pool.map(_build_subject, [spec] * len(by_subject), by_subject)
        else:
            batches = (_build_subject(spec, group) for group in by_subject)
        try:
            done = 0
            for batch in batches:
                for clip in batch:
                    writer.add(clip)
                done += len(batch)
                if progress:
                    progress(done, len(items))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
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


# The built-in benchmarks by name (``orch ... --benchmark NAME``).
BENCHMARKS: dict[str, SyntheticSpec] = {
    # the default: 34 subjects x 9 clips (144 / 54 / 108), 32-64 frames at 100 fps
    "default": SyntheticSpec(),
    # DFME's competition split at full size: 2,629 clips of 259 subjects, 1,856 / 474 / 299
    # in train / test_A / test_B (subjects disjoint), DFME-like class imbalance — what
    # performance and cluster runs are measured on
    "dfme-size": SyntheticSpec(subjects={"train": 183, "test_A": 47, "test_B": 29},
                               clips={"train": 1856, "test_A": 474, "test_B": 299}, class_weights="dfme"),
}


def benchmark_spec(name: str) -> SyntheticSpec:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"benchmark: unknown {name!r}; known: {sorted(BENCHMARKS)}") from None
