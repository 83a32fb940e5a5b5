"""Source clips -> frame store, in parallel, with a report that loses nothing.

Each clip is read by a worker (``load_clip``): only the frames that temporal normalisation
keeps are decoded; with ``crop="face"`` one face box is found on the onset frame and used
for every frame (the detector's best-scoring face whose landmarks hold to the image, see
``storage.preprocess.landmarks``); frames are resized to ``size`` x ``size``. A clip whose
source frames change while its face crop shows no motion at all is skipped, not stored: that
crop is not of the moving face. Clips are written in the sources' order, whatever the order
workers finish in, so two ingests of the same data give the same store. A clip that cannot
be read is skipped with its reason; rows a source already set aside (bad annotations) arrive
as skips too. The report — clips written, clips skipped with reasons, frames read, notes,
face boxes, every detection of the clips where the detector found several faces, time — is
returned and written as JSON beside the store (``STORE.ingest.json``).

Workers are spawned processes by default (``process_map``); any ``mapper`` with the same
shape runs them elsewhere — ``orchestrator.ray_ingest`` runs them as Ray tasks on a cluster.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from storage.preprocess.face import DEFAULT_MARGIN, Detection, FaceError, crop_box, crop_frames, describe_all
from storage.preprocess.landmarks import choose_face
from storage.preprocess.temporal import TARGET_FPS, resample_index, resample_indices
from storage.sources.frames import ClipError, ClipSource, read_clip
from storage.store import Clip, StoreWriter

CROPS = ("face", "none")
COLORS = ("gray", "rgb")
FEATURES = ("flow_roi", "none")
FLOW_SHAPE = (18, 2)  # flow_roi: (dx, dy) for each of the 18 regions of storage.preprocess.flow.ROIS
MOTIONLESS_CROP = "face crop shows no motion while the source frames change: wrong face box?"


@dataclass(frozen=True)
class Skip:
    item: str  # clip id, or the annotation row
    source: str  # file or folder it came from
    reason: str


@dataclass(frozen=True)
class IngestOptions:
    """How every clip is turned into stored frames."""

    size: int = 128
    color: str = "gray"
    crop: str = "face"  # "face": dlib box on the onset frame; "none": whole frames resized
    face_margin: float = DEFAULT_MARGIN
    target_fps: float = TARGET_FPS
    # "flow_roi": onset->frame optical flow pooled over 18 facial regions, per frame (the
    # paper's input); the face box then comes from the 68 landmarks and serves the frames too
    features: str = "flow_roi"
    flow_size: int = 256  # the face crop's side for the flow (the paper's 256 x 256)

    def __post_init__(self):
        if self.color not in COLORS:
            raise ValueError(f"color: expected one of {COLORS}, got {self.color!r}")
        if self.crop not in CROPS:
            raise ValueError(f"crop: expected one of {CROPS}, got {self.crop!r}")
        if self.size < 8:
            raise ValueError(f"size: at least 8 pixels, got {self.size}")
        if not 0 <= self.face_margin <= 1:
            raise ValueError(f"face_margin: expected 0..1, got {self.face_margin}")
        if self.features not in FEATURES:
            raise ValueError(f"features: expected one of {FEATURES}, got {self.features!r}")

    @property
    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"flow_roi": FLOW_SHAPE} if self.features == "flow_roi" else {}

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return (self.size, self.size) if self.color == "gray" else (self.size, self.size, 3)


@dataclass
class IngestReport:
    store: str
    options: dict = field(default_factory=dict)
    written: int = 0
    frames_read: int = 0  # frames decoded from the sources (after temporal normalisation)
    frames_stored: int = 0
    seconds: float = 0.0
    skipped: list[Skip] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. damaged frames replaced
    face_boxes: dict[str, list[int]] = field(default_factory=dict)  # clip -> [l, t, r, b], source pixels
    # clip -> every detection on its onset frame ({"box", "score"}, best first: the one
    # used), for the clips where the detector found more than one face
    several_faces: dict[str, list[dict]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @property
    def path(self) -> Path:
        return report_path(self.store)


def report_path(store: str | Path) -> Path:
    store = Path(store)
    return store.parent / f"{store.name}.ingest.json"


@dataclass
class Loaded:
    """What a worker sends back for one clip: its stored frames, or why it has none."""

    frames: np.ndarray | None
    source_frames: int = 0
    notes: list[str] = field(default_factory=list)
    box: list[int] | None = None
    error: str | None = None
    features: dict[str, np.ndarray] | None = None
    faces: list[dict] = field(default_factory=list)  # every detection on the onset frame, best first


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    if frames.shape[1:3] == (size, size):
        return frames
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


@dataclass
class Prepared:
    """One clip as ``prepare_clip`` leaves it."""

    frames: np.ndarray  # the stored frames: cropped (or whole) and resized
    box: list[int] | None  # the crop box, source pixels ([l, t, r, b]); None without a face crop
    features: dict[str, np.ndarray]  # per-frame features by name
    faces: list[Detection]  # every detection on the onset frame, best first (the one used)


def _changes(frames: np.ndarray) -> bool:
    """Whether any frame differs from the first in any pixel."""
    return any(not np.array_equal(f, frames[0]) for f in frames[1:])  # frame by frame: no full-size copy


def _check_crop_moves(source: np.ndarray, stored: np.ndarray, features: dict[str, np.ndarray], cropped: bool) -> None:
    """ClipError when the source frames change but the crop does not move at all: flow
    features exactly zero, or identical cropped frames. Camera frames always change a
    little (sensor noise), so a crop that is exactly still is not of the moving face."""
    if not _changes(source):
        return
    flow = features.get("flow_roi")
    if (flow is not None and not flow.any()) or (cropped and not _changes(stored)):
        raise ClipError(MOTIONLESS_CROP)


def prepare_clip(frames: np.ndarray, onset: int, opts: IngestOptions) -> Prepared:
    """A clip's frames at the target frame rate -> its stored frames, face box, per-frame
    features and the detections the box was chosen from. Raises ClipError with the reason
    (no face, a face box whose landmarks do not hold, landmarks off the image, a crop that
    does not move while the frames do, ...)."""
    source, crop, box, features, faces = frames, None, None, {}, []
    if opts.features == "flow_roi":
        from storage.preprocess.flow import FeatureError, clip_flow_features

        try:
            flow = clip_flow_features(frames, onset=onset, crop_size=opts.flow_size)
        except FeatureError as e:
            raise ClipError(str(e)) from None
        crop, features, faces = flow.box, {"flow_roi": flow.features}, list(flow.faces)
    elif opts.crop == "face":
        try:
            choice = choose_face(frames[onset])
        except FaceError as e:
            raise ClipError(str(e)) from None
        crop, faces = crop_box(choice.face.box, opts.face_margin), list(choice.found)
    if opts.crop == "face":
        frames, box = crop_frames(frames, crop, opts.size), crop.as_list()
    else:
        frames = _resize(frames, opts.size)
    try:
        _check_crop_moves(source, frames, features, cropped=opts.crop == "face")
    except ClipError as e:
        detail = f"; {describe_all(faces)}" if len(faces) > 1 else ""
        where = f"crop box {crop.as_list()}" if crop is not None else "no crop"
        raise ClipError(f"{e} ({where}{detail})") from None
    return Prepared(frames, box, features, faces)


def load_clip(src: ClipSource, opts: IngestOptions) -> Loaded:
    """Worker: one clip -> its frames at the target frame rate, cropped and resized, and
    their features."""
    cv2.setNumThreads(1)

    def kept(n: int) -> np.ndarray:
        for name in ("onset", "apex", "offset"):
            i = getattr(src, name)
            if i is not None and not 0 <= i < n:
                raise ClipError(f"{src.origin}: {name} at frame {i}, outside the clip's {n} frames")
        return resample_indices(n, src.source_fps, opts.target_fps)

    try:
        frames, n, keep, notes = read_clip(src, opts.color, kept)
        onset = resample_index(src.onset or 0, n, src.source_fps, opts.target_fps)
        try:
            got = prepare_clip(frames, onset, opts)
        except ClipError as e:
            raise ClipError(f"{src.origin}: {e} ({src.frame_name(int(keep[onset]))})") from None
        return Loaded(got.frames, n, notes, got.box, features=got.features, faces=[d.as_dict() for d in got.faces])
    except ClipError as e:
        return Loaded(None, error=str(e))
    except Exception as e:  # noqa: BLE001 - one clip's surprise must not sink the others
        return Loaded(None, error=f"{src.origin}: unexpected {type(e).__name__}: {e}")


Mapper = Callable[[list[ClipSource], IngestOptions], Iterator[Loaded]]


def process_map(workers: int | None = None) -> Mapper:
    """Run ``load_clip`` in ``workers`` spawned processes (default: all cores), results in
    the sources' order."""
    workers = max(1, workers or (os.cpu_count() or 1))

    def run(sources: list[ClipSource], opts: IngestOptions) -> Iterator[Loaded]:
        if workers == 1:
            yield from (load_clip(s, opts) for s in sources)
            return
        # spawned, not forked: a parent that holds threads (torch, Ray, OpenMP) can
        # deadlock forked children
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            try:
                yield from pool.map(load_clip, sources, [opts] * len(sources),
                                    chunksize=max(1, len(sources) // (workers * 8)))
            finally:
                pool.shutdown(cancel_futures=True)

    return run


def ingest(sources: Iterable[ClipSource], out: str | Path, labels: list[str],
           options: IngestOptions = IngestOptions(), workers: int | None = None,
           mapper: Mapper | None = None, pre_skipped: Iterable[Skip] = (),
           progress: Callable[[int, int], None] | None = None, overwrite: bool = False,
           metadata: dict[str, str] | None = None) -> IngestReport:
    """Write the readable clips of ``sources`` into a store at ``out``; report everything."""
    sources = list(sources)
    ids = [s.clip_id for s in sources]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"clip id {dup!r} appears more than once among the sources")
    report = IngestReport(store=str(out), options=asdict(options), skipped=list(pre_skipped))
    run = mapper or process_map(workers)
    t0 = time.time()
    meta = {"ingest_options": json.dumps(asdict(options), sort_keys=True), **(metadata or {})}
    with StoreWriter(out, labels=labels, frame_shape=options.frame_shape, target_fps=options.target_fps,
                     metadata=meta, overwrite=overwrite, features=options.feature_shapes) as writer:
        results = run(sources, options)
        try:
            for k, (src, got) in enumerate(zip(sources, results), 1):
                if got.error is not None:
                    report.skipped.append(Skip(src.clip_id, src.origin, got.error))
                else:
                    writer.add(Clip(src.clip_id, src.dataset, src.subject, src.split, src.label,
                                    src.source_fps, got.frames, src.onset, src.apex, src.offset,
                                    source_frames=got.source_frames, features=got.features))
                    report.written += 1
                    report.frames_read += len(got.frames) - len(got.notes)
                    report.frames_stored += len(got.frames)
                    report.notes += [f"{src.clip_id}: {n}" for n in got.notes]
                    if got.box is not None:
                        report.face_boxes[src.clip_id] = got.box
                    if len(got.faces) > 1:
                        report.several_faces[src.clip_id] = got.faces
                if progress:
                    progress(k, len(sources))
        finally:
            close = getattr(results, "close", None)
            if close:
                close()
    report.seconds = round(time.time() - t0, 3)
    report.path.write_text(report.to_json())
    return report
