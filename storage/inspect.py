"""What a frame store holds, and whether it is intact.

``summarize(path)`` counts a store's clips (per split, class, split × class, subject,
dataset), its frame rates and stored clip lengths, and its size on disk.

``verify(path)`` runs named checks, each passed, failed or skipped (when a check it needs
did not pass), with a message naming the file or clip and the reason:

- ``open``: both files present and readable Arrow, format version, metadata, clip columns
  with their types, no nulls where a value is required, the frame column's type;
- ``offsets``: frame counts positive, clips contiguous from row 0 without overlap, the total
  equal to the rows of ``frames.arrow``, every clip inside one record batch;
- ``labels``: ``label_index`` is the label's position in the vocabulary, -1 iff no label;
- ``annotations``: onset/apex/offset null or inside ``[0, frame_count)``;
- ``fingerprint``: the content fingerprint recomputed (``FrameStore.verify``).

``open`` repeats what ``FrameStore``'s constructor checks except the layout, so that a bad
offset is reported by ``offsets``, naming the clip, rather than as a store that won't open.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import pyarrow as pa

from storage.store import CLIP_SCHEMA, CLIPS_FILE, FORMAT_VERSION, FRAMES_FILE, UNLABELLED, FrameStore, StoreError

UNLABELLED_CLASS = "(unlabelled)"  # the class name under which clips without a label are counted
_NULLABLE = {"label", "onset", "apex", "offset"}
_ANNOTATIONS = ("onset", "apex", "offset")


# -- summary ------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameLengths:
    """Distribution of the stored clips' frame counts."""

    min: int
    p10: float
    median: float
    mean: float
    p90: float
    max: int


@dataclass(frozen=True)
class StoreSummary:
    path: str
    fingerprint: str
    n_clips: int
    n_frames: int
    frame_shape: tuple[int, ...]
    features: dict[str, tuple[int, ...]]  # per-frame feature tables: name -> shape per frame
    labels: list[str]
    splits: dict[str, int]  # clips per split, in order of first appearance
    classes: dict[str, int]  # clips per class: the vocabulary's order, then UNLABELLED_CLASS if any
    split_classes: dict[str, dict[str, int]]  # split -> class -> clips, every class of ``classes``
    subjects: dict[str, dict[str, int]]  # subject -> split -> clips
    datasets: dict[str, int]
    source_fps: dict[float, int]  # clips per source frame rate, ascending
    fps: dict[float, int]  # clips per stored frame rate, ascending
    lengths: FrameLengths | None  # None for a store without clips
    size_bytes: int  # all files in the store directory
    user_metadata: dict[str, str]  # the ``orch.user.*`` metadata, prefix removed

    def to_dict(self) -> dict:
        """JSON-ready: frame rates become string keys (``"200"``, ``"29.97"``)."""
        d = asdict(self)
        for key in ("source_fps", "fps"):
            d[key] = {f"{fps:g}": n for fps, n in d[key].items()}
        return d


def summarize(path: str | Path) -> StoreSummary:
    """Count what the store at ``path`` holds; StoreError if it does not open."""
    store = FrameStore(path)
    rows = store.clips.select(["dataset", "subject", "split", "label", "source_fps", "fps", "frame_count"]).to_pydict()
    classes_of = [UNLABELLED_CLASS if label is None else label for label in rows["label"]]
    class_counts = Counter(classes_of)
    class_order = [*store.labels, *sorted(set(class_counts) - set(store.labels) - {UNLABELLED_CLASS})]
    if UNLABELLED_CLASS in class_counts:
        class_order.append(UNLABELLED_CLASS)
    splits = dict(Counter(rows["split"]))
    pairs = Counter(zip(rows["split"], classes_of))
    subjects: dict[str, dict[str, int]] = {}
    for (subject, split), n in sorted(Counter(zip(rows["subject"], rows["split"])).items()):
        subjects.setdefault(subject, {})[split] = n
    counts = np.asarray(rows["frame_count"], dtype=np.int64)
    return StoreSummary(
        path=str(store.path),
        fingerprint=store.fingerprint,
        n_clips=len(store),
        n_frames=int(counts.sum()),
        frame_shape=store.frame_shape,
        features=dict(store.feature_shapes),
        labels=store.labels,
        splits=splits,
        classes={c: class_counts[c] for c in class_order},
        split_classes={s: {c: pairs[(s, c)] for c in class_order} for s in splits},
        subjects=subjects,
        datasets=dict(sorted(Counter(rows["dataset"]).items())),
        source_fps=dict(sorted(Counter(rows["source_fps"]).items())),
        fps=dict(sorted(Counter(rows["fps"]).items())),
        lengths=_lengths(counts) if len(counts) else None,
        size_bytes=sum(f.stat().st_size for f in store.path.rglob("*") if f.is_file()),
        user_metadata={k.removeprefix("orch.user."): v for k, v in store.metadata.items()
                       if k.startswith("orch.user.")},
    )


def _lengths(counts: np.ndarray) -> FrameLengths:
    p10, median, p90 = (float(p) for p in np.percentile(counts, [10, 50, 90]))
    return FrameLengths(min=int(counts.min()), p10=p10, median=median, mean=float(counts.mean()),
                        p90=p90, max=int(counts.max()))


# -- verification -------------------------------------------------------------------------
class Status(str, Enum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str


@dataclass(frozen=True)
class VerifyResult:
    path: str
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.status is Status.PASSED for c in self.checks)

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)


class _Verification:
    """The checks of one store; ``open`` reads the tables the others look at. Each check
    returns what it found when it passes and raises StoreError when it fails."""

    def __init__(self, path: Path):
        self.path = path
        self.clips_path = path / CLIPS_FILE

    def open(self) -> str:
        for p in (self.clips_path, self.path / FRAMES_FILE):
            if not p.is_file():
                raise StoreError(f"{p}: missing — {self.path} is not a frame store")
        try:
            self.clips = pa.ipc.open_file(pa.memory_map(str(self.clips_path))).read_all()
            self.frames = pa.ipc.open_file(pa.memory_map(str(self.path / FRAMES_FILE))).read_all()
        except (pa.ArrowInvalid, OSError) as e:
            raise StoreError(f"{self.path}: not a readable Arrow store ({e})") from e
        meta = {k.decode(): v.decode() for k, v in (self.clips.schema.metadata or {}).items()}
        if meta.get("orch.format_version") != FORMAT_VERSION:
            raise StoreError(f"{self.clips_path}: format version {meta.get('orch.format_version')!r}, "
                             f"this orch reads {FORMAT_VERSION!r}")
        missing = [k for k in ("orch.labels", "orch.frame_shape", "orch.fingerprint") if k not in meta]
        if missing:
            raise StoreError(f"{self.clips_path}: missing metadata {', '.join(missing)}")
        try:
            self.vocabulary: list[str] = json.loads(meta["orch.labels"])
            frame_shape = tuple(json.loads(meta["orch.frame_shape"]))
        except json.JSONDecodeError as e:
            raise StoreError(f"{self.clips_path}: orch.labels or orch.frame_shape is not JSON ({e})") from e
        self._check_columns()
        frame_type = pa.fixed_shape_tensor(pa.uint8(), list(frame_shape))
        if "frame" not in self.frames.schema.names:
            raise StoreError(f"{self.path / FRAMES_FILE}: no column 'frame'")
        if self.frames.schema.field("frame").type != frame_type:
            raise StoreError(f"{self.path / FRAMES_FILE}: column 'frame' is {self.frames.schema.field('frame').type}, "
                             f"orch.frame_shape says {frame_type}")
        return f"format version {FORMAT_VERSION}, {self.clips.num_rows} clips, {self.frames.num_rows} frames"

    def _check_columns(self) -> None:
        schema = self.clips.schema
        for field in CLIP_SCHEMA:
            if field.name not in schema.names:
                raise StoreError(f"{self.clips_path}: missing column {field.name!r}")
            if schema.field(field.name).type != field.type:
                raise StoreError(f"{self.clips_path}: column {field.name!r} is {schema.field(field.name).type}, "
                                 f"expected {field.type}")
            nulls = self.clips.column(field.name).null_count
            if nulls and field.name not in _NULLABLE:
                raise StoreError(f"{self.clips_path}: column {field.name!r} has {nulls} null values")

    def offsets(self) -> str:
        counts = self.clips.column("frame_count").to_numpy().astype(np.int64)
        offsets = self.clips.column("frame_offset").to_numpy()
        if len(bad := np.flatnonzero(counts <= 0)):
            i = int(bad[0])
            raise StoreError(f"{self._clip(i)}: frame_count {counts[i]} (must be positive)")
        expected = np.cumsum(counts) - counts  # where each clip starts when none overlaps
        if len(bad := np.flatnonzero(offsets != expected)):
            i = int(bad[0])
            where = "the first clip starts at row 0" if i == 0 else f"where clip {self._id(i - 1)!r} ends"
            raise StoreError(f"{self._clip(i)}: frame_offset {offsets[i]}, expected {expected[i]} ({where})")
        total = int(counts.sum())
        if total != self.frames.num_rows:
            raise StoreError(f"{self.clips_path}: clips count {total} frames, "
                             f"{self.path / FRAMES_FILE} holds {self.frames.num_rows}")
        batch_ends = np.cumsum([len(c) for c in self.frames.column("frame").chunks], dtype=np.int64)
        batch = np.searchsorted(batch_ends, offsets, side="right")
        if len(bad := np.flatnonzero(offsets + counts > batch_ends[batch])):
            raise StoreError(f"{self._clip(int(bad[0]))}: frames span two record batches of {FRAMES_FILE}")
        return f"{len(counts)} clips contiguous over {total} frames, each inside one of {len(batch_ends)} record batches"

    def labels(self) -> str:
        rows = self.clips.select(["label", "label_index"]).to_pylist()
        for i, row in enumerate(rows):
            label, index = row["label"], row["label_index"]
            if label is None:
                if index != UNLABELLED:
                    raise StoreError(f"{self._clip(i)}: label_index {index} but no label "
                                     f"(unlabelled clips have {UNLABELLED})")
            elif label not in self.vocabulary:
                raise StoreError(f"{self._clip(i)}: label {label!r} is not in the vocabulary {self.vocabulary}")
            elif index != self.vocabulary.index(label):
                raise StoreError(f"{self._clip(i)}: label_index {index} but label {label!r} "
                                 f"is {self.vocabulary.index(label)} in the vocabulary")
        unlabelled = sum(row["label"] is None for row in rows)
        return f"{len(rows) - unlabelled} labelled, {unlabelled} unlabelled, vocabulary of {len(self.vocabulary)}"

    def annotations(self) -> str:
        rows = self.clips.select([*_ANNOTATIONS, "frame_count"]).to_pylist()
        annotated = 0
        for i, row in enumerate(rows):
            for name in _ANNOTATIONS:
                at = row[name]
                if at is not None and not 0 <= at < row["frame_count"]:
                    raise StoreError(f"{self._clip(i)}: {name} {at} outside its frames [0, {row['frame_count']})")
            annotated += any(row[name] is not None for name in _ANNOTATIONS)
        return f"{annotated} of {len(rows)} clips annotated, all inside their frames"

    def fingerprint(self) -> str:
        store = FrameStore(self.path)
        store.verify()
        return f"content fingerprint {store.fingerprint[:12]} recomputed and matching"

    def _id(self, i: int) -> str:
        return self.clips.column("clip_id")[i].as_py()

    def _clip(self, i: int) -> str:
        return f"{self.clips_path}: clip {self._id(i)!r}"


_CHECKS: tuple[tuple[str, tuple[str, ...], Callable[[_Verification], str]], ...] = (
    ("open", (), _Verification.open),
    ("offsets", ("open",), _Verification.offsets),
    ("labels", ("open",), _Verification.labels),
    ("annotations", ("open",), _Verification.annotations),
    ("fingerprint", ("open", "offsets"), _Verification.fingerprint),
)


def verify(path: str | Path) -> VerifyResult:
    """Run every check on the store at ``path``; never raises for what it finds."""
    verification = _Verification(Path(path))
    done: dict[str, Check] = {}
    for name, needs, run in _CHECKS:
        blocked = [n for n in needs if done[n].status is not Status.PASSED]
        if blocked:
            done[name] = Check(name, Status.SKIPPED, f"not run: {', '.join(blocked)} did not pass")
            continue
        try:
            done[name] = Check(name, Status.PASSED, run(verification))
        except StoreError as e:
            done[name] = Check(name, Status.FAILED, str(e))
    return VerifyResult(str(path), list(done.values()))
