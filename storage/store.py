"""The frame store: a directory of uncompressed Apache Arrow IPC files.

- ``clips.arrow``: one row per clip (see ``CLIP_SCHEMA``); its schema metadata holds the
  format version, the label vocabulary, the frame shape and the content fingerprint.
- ``frames.arrow``: one row per stored frame, a fixed-shape uint8 tensor column. A clip's
  frames are the rows ``[frame_offset, frame_offset + frame_count)``, never split across
  record batches.
- ``features.arrow`` (optional): per-frame features computed at ingest (e.g. the optical
  flow pooled over facial regions, ``flow_roi`` [18, 2]), one fixed-shape float32 tensor
  column per feature, rows aligned with ``frames.arrow`` and batched the same way, so a
  clip's features are a zero-copy view like its frames.

Frames are normalised to 100 fps when written (``preprocess.temporal``). A store is opened
once per process with ``pa.memory_map``; ``frames(i)`` is a numpy view into the mapped file
(no copy) and ``sample(i, n)`` copies only the ``n`` frames it returns.

Writes are atomic: everything goes to a hidden temporary directory beside the target,
which is renamed into place only after every file is complete and synced. A crash leaves
either the old store or none, never a half-written one that opens.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from storage.preprocess.temporal import TARGET_FPS, resample_index, resample_indices, stored_fps
from storage.sampling import uniform_indices

FORMAT_VERSION = "1"
CLIPS_FILE = "clips.arrow"
FRAMES_FILE = "frames.arrow"
FEATURES_FILE = "features.arrow"
STORE_FILES = (CLIPS_FILE, FRAMES_FILE, FEATURES_FILE)
MARKER = "orch-store.json"  # a published store's completion marker (storage.location)
UNLABELLED = -1  # label_index of clips whose label is unknown (competition test rows)

CLIP_SCHEMA = pa.schema([
    ("clip_id", pa.string()),
    ("dataset", pa.string()),
    ("subject", pa.string()),
    ("split", pa.string()),
    ("label", pa.string()),  # null when unknown
    ("label_index", pa.int16()),  # position in the store's label vocabulary, -1 when unknown
    ("source_fps", pa.float32()),
    ("fps", pa.float32()),  # stored frame rate
    ("onset", pa.int32()),  # frame indices into the stored clip, null when not annotated
    ("apex", pa.int32()),
    ("offset", pa.int32()),
    ("frame_count", pa.int32()),
    ("frame_offset", pa.int64()),  # first row of this clip in frames.arrow
])

_FLUSH_BYTES = 32 * 2**20  # frames buffered before a record batch is written


class StoreError(Exception):
    """A store that cannot be opened or written; the message names the file and reason."""


@dataclass
class Clip:
    """One clip as a source yields it: frames at the source frame rate, before resampling.

    ``onset``/``apex``/``offset`` index the source frames (0-based) when known. A reader that
    resampled already (decoding only the frames kept) passes those frames and the clip's
    ``source_frames`` count; the writer checks they are the frames it would keep.
    """

    clip_id: str
    dataset: str
    subject: str
    split: str
    label: str | None
    source_fps: float
    frames: np.ndarray  # [T, H, W] or [T, H, W, C], uint8
    onset: int | None = None
    apex: int | None = None
    offset: int | None = None
    source_frames: int | None = None  # set when ``frames`` are already the kept frames
    features: dict[str, np.ndarray] | None = None  # name -> [T, ...] float32, aligned with frames


def _frame_type(frame_shape: tuple[int, ...]) -> pa.DataType:
    return pa.fixed_shape_tensor(pa.uint8(), list(frame_shape))


class StoreWriter:
    """Writes a store atomically. Use as a context manager::

        with StoreWriter(path, labels=CLASSES, frame_shape=(64, 64)) as w:
            for clip in clips:
                w.add(clip)

    On an exception inside the block nothing appears at ``path``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        labels: Iterable[str],
        frame_shape: tuple[int, ...],
        target_fps: float = TARGET_FPS,
        metadata: dict[str, str] | None = None,
        overwrite: bool = False,
        features: dict[str, tuple[int, ...]] | None = None,
    ):
        self.path = Path(path)
        self.features = {k: tuple(int(d) for d in v) for k, v in (features or {}).items()}
        self.labels = list(labels)
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels: duplicate names in {self.labels}")
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.target_fps = float(target_fps)
        self.metadata = dict(metadata or {})
        if self.path.exists() and not overwrite:
            raise StoreError(f"{self.path}: a store already exists there (pass overwrite=True to replace it)")
        if overwrite:
            check_replaceable(self.path)
        self.overwrite = overwrite
        self._tmp = self.path.parent / f".{self.path.name}.tmp-{uuid.uuid4().hex[:8]}"
        self._rows: list[dict] = []
        self._ids: set[str] = set()
        self._pending: list[np.ndarray] = []
        self._pending_features: dict[str, list[np.ndarray]] = {k: [] for k in self.features}
        self._features_hash = {k: hashlib.sha256() for k in self.features}
        self._pending_bytes = 0
        self._n_frames = 0
        self._frames_hash = hashlib.sha256()
        self._sink = None
        self._writer = None
        self._fsink = None
        self._fwriter = None
        self._finished = False

    # -- context management -------------------------------------------------------------
    def __enter__(self) -> "StoreWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir()
        self._frame_field = pa.field("frame", _frame_type(self.frame_shape))
        self._sink = pa.OSFile(str(self._tmp / FRAMES_FILE), "wb")
        self._writer = pa.ipc.new_file(self._sink, pa.schema([self._frame_field]))
        if self.features:
            self._feature_schema = pa.schema([pa.field(k, pa.fixed_shape_tensor(pa.float32(), list(v)))
                                              for k, v in self.features.items()])
            self._fsink = pa.OSFile(str(self._tmp / FEATURES_FILE), "wb")
            self._fwriter = pa.ipc.new_file(self._fsink, self._feature_schema)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._abort()
            return
        try:
            self._finish()
        except BaseException:
            self._abort()
            raise

    # -- adding clips -------------------------------------------------------------------
    def add(self, clip: Clip) -> None:
        frames = np.asarray(clip.frames)
        where = f"clip {clip.clip_id!r}"
        if clip.clip_id in self._ids:
            raise StoreError(f"{where}: duplicate clip_id")
        if frames.dtype != np.uint8:
            raise StoreError(f"{where}: frames must be uint8, got {frames.dtype}")
        if frames.ndim < 2 or tuple(frames.shape[1:]) != self.frame_shape:
            raise StoreError(f"{where}: frame shape {tuple(frames.shape[1:])} != store's {self.frame_shape}")
        if len(frames) == 0:
            raise StoreError(f"{where}: no frames")
        if clip.label is not None and clip.label not in self.labels:
            raise StoreError(f"{where}: label {clip.label!r} is not one of {self.labels}")
        n_src = len(frames) if clip.source_frames is None else int(clip.source_frames)
        keep = resample_indices(n_src, clip.source_fps, self.target_fps)
        if clip.source_frames is None:
            kept = np.ascontiguousarray(frames[keep])
        elif len(frames) == len(keep):
            kept = np.ascontiguousarray(frames)
        else:
            raise StoreError(f"{where}: {len(frames)} frames given for {n_src} source frames at "
                             f"{clip.source_fps} fps, which keep {len(keep)}")

        def mapped(i: int | None) -> int | None:
            if i is None:
                return None
            if not 0 <= i < n_src:
                raise StoreError(f"{where}: annotated frame {i} outside the clip's {n_src} frames")
            return resample_index(i, n_src, clip.source_fps, self.target_fps)

        given = clip.features or {}
        if set(given) != set(self.features):
            raise StoreError(f"{where}: features {sorted(given)} != the store's {sorted(self.features)}")
        feats = {}
        for name, shape in self.features.items():
            f = np.asarray(given[name], dtype=np.float32)
            if f.shape[1:] != shape or len(f) != (n_src if clip.source_frames is None else len(kept)):
                raise StoreError(f"{where}: feature {name!r} has shape {f.shape}, expected one {shape} per frame")
            feats[name] = np.ascontiguousarray(f if clip.source_frames is not None else f[keep])
        row = dict(
            clip_id=clip.clip_id, dataset=clip.dataset, subject=clip.subject, split=clip.split,
            label=clip.label,
            label_index=self.labels.index(clip.label) if clip.label is not None else UNLABELLED,
            source_fps=float(clip.source_fps), fps=stored_fps(clip.source_fps, self.target_fps),
            onset=mapped(clip.onset), apex=mapped(clip.apex), offset=mapped(clip.offset),
            frame_count=len(kept), frame_offset=self._n_frames,
        )
        self._ids.add(clip.clip_id)
        self._rows.append(row)
        self._pending.append(kept)
        self._pending_bytes += kept.nbytes
        self._n_frames += len(kept)
        self._frames_hash.update(kept.tobytes())
        for name, f in feats.items():
            self._pending_features[name].append(f)
            self._features_hash[name].update(f.tobytes())
            self._pending_bytes += f.nbytes
        if self._pending_bytes >= _FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        block = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        tensor = pa.FixedShapeTensorArray.from_numpy_ndarray(block)
        self._writer.write_batch(pa.record_batch([tensor], schema=pa.schema([self._frame_field])))
        if self.features:
            columns = [pa.FixedShapeTensorArray.from_numpy_ndarray(np.concatenate(self._pending_features[k]))
                       for k in self.features]
            self._fwriter.write_batch(pa.record_batch(columns, schema=self._feature_schema))
            self._pending_features = {k: [] for k in self.features}
        self._pending, self._pending_bytes = [], 0

    # -- finishing ----------------------------------------------------------------------
    def _finish(self) -> None:
        self._flush()
        self._writer.close()
        self._sink.close()
        if self.features:
            self._fwriter.close()
            self._fsink.close()
        clips = pa.Table.from_pylist(self._rows, schema=CLIP_SCHEMA)
        meta = {
            "orch.format_version": FORMAT_VERSION,
            "orch.labels": json.dumps(self.labels),
            "orch.frame_shape": json.dumps(list(self.frame_shape)),
            "orch.target_fps": json.dumps(self.target_fps),
            "orch.fingerprint": content_fingerprint(clips, self._frames_hash.hexdigest(), self.labels,
                                                    self.frame_shape, self._feature_digests()),
            **({"orch.features": json.dumps({k: list(v) for k, v in self.features.items()})} if self.features else {}),
            **{f"orch.user.{k}": str(v) for k, v in self.metadata.items()},
        }
        clips = clips.replace_schema_metadata(meta)
        with pa.OSFile(str(self._tmp / CLIPS_FILE), "wb") as sink:
            with pa.ipc.new_file(sink, clips.schema) as w:
                w.write_table(clips)
        for name in (FRAMES_FILE, CLIPS_FILE) + ((FEATURES_FILE,) if self.features else ()):
            _fsync(self._tmp / name)
        _fsync_dir(self._tmp)
        self._commit()
        self._finished = True

    def _feature_digests(self) -> dict[str, tuple[list[int], str]]:
        return {k: (list(v), self._features_hash[k].hexdigest()) for k, v in self.features.items()}

    def _commit(self) -> None:
        """Rename the finished temporary directory into place. Without ``overwrite`` a store
        that appeared meanwhile is never replaced; with it, the old store is moved aside and
        put back if the new one cannot be moved in."""
        old = None
        if self.overwrite and self.path.exists():
            check_replaceable(self.path)  # again: it may have changed while the store was written
            old = self.path.parent / f".{self.path.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(self.path, old)
        try:
            os.rename(self._tmp, self.path)  # fails if a non-empty directory is there
        except OSError as e:
            if old is not None:
                os.rename(old, self.path)
            raise StoreError(f"{self.path}: cannot move the new store into place ({e})") from e
        _fsync_dir(self.path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _abort(self) -> None:
        try:
            for handle in (self._writer, self._sink, self._fwriter, self._fsink):
                if handle is not None:
                    handle.close()
        except Exception:  # noqa: BLE001 - the original exception is what matters
            pass
        shutil.rmtree(self._tmp, ignore_errors=True)


def foreign_files(names) -> str | None:
    """The names among ``names`` that are no store's file, shown (at most five), or None."""
    foreign = sorted(set(names) - set(STORE_FILES) - {MARKER})
    if not foreign:
        return None
    return ", ".join(foreign[:5]) + (f", ... ({len(foreign) - 5} more)" if len(foreign) > 5 else "")


def check_replaceable(path: Path) -> None:
    """StoreError unless ``path`` is absent, an empty directory or an orch store — a directory
    that holds nothing but a store's files. ``overwrite`` replaces such a directory only,
    never an arbitrary folder (whatever else it holds would be deleted with it)."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        raise StoreError(f"{path}: not a directory, so not an orch store; overwrite replaces only a store")
    names = {p.name for p in path.iterdir()}
    shown = foreign_files(names)
    if shown:
        raise StoreError(f"{path}: not an orch store, so overwrite will not replace it: it holds {shown}")
    if names and not {CLIPS_FILE, FRAMES_FILE} <= names:
        raise StoreError(f"{path}: not an orch store (it holds {', '.join(sorted(names))} but not both "
                         f"{CLIPS_FILE} and {FRAMES_FILE}), so overwrite will not replace it")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync(path)
    except OSError:  # some filesystems refuse fsync on directories
        pass


def content_fingerprint(clips: pa.Table, frames_sha256: str, labels: list[str],
                        frame_shape: tuple[int, ...], features: dict[str, tuple[list[int], str]] | None = None) -> str:
    """A hash of what the store holds (clip rows, frame bytes, vocabulary, shape, and the
    per-frame features: name -> (shape, sha256 of their bytes)) — independent of file
    layout, write time or batch boundaries."""
    h = hashlib.sha256()
    h.update(f"orch-store-v{FORMAT_VERSION}\n".encode())
    h.update(json.dumps({"labels": labels, "frame_shape": list(frame_shape)}).encode())
    h.update(json.dumps(clips.replace_schema_metadata(None).to_pylist(), sort_keys=True).encode())
    h.update(frames_sha256.encode())
    if features:
        h.update(json.dumps({k: list(v) for k, v in sorted(features.items())}).encode())
    return h.hexdigest()


class FrameStore:
    """A store opened read-only through memory maps. Open once per process."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        clips_path, frames_path = self.path / CLIPS_FILE, self.path / FRAMES_FILE
        for p in (clips_path, frames_path):
            if not p.is_file():
                raise StoreError(f"{p}: missing — {self.path} is not a frame store")
        try:
            self.clips: pa.Table = pa.ipc.open_file(pa.memory_map(str(clips_path))).read_all()
            self._frames_table = pa.ipc.open_file(pa.memory_map(str(frames_path))).read_all()
        except pa.ArrowInvalid as e:
            raise StoreError(f"{self.path}: not a readable Arrow store ({e})") from e
        meta = {k.decode(): v.decode() for k, v in (self.clips.schema.metadata or {}).items()}
        version = meta.get("orch.format_version")
        if version != FORMAT_VERSION:
            raise StoreError(f"{clips_path}: format version {version!r}, this orch reads {FORMAT_VERSION!r}")
        missing = [k for k in ("orch.labels", "orch.frame_shape", "orch.fingerprint") if k not in meta]
        missing += [f"column {c!r}" for c in CLIP_SCHEMA.names if c not in self.clips.schema.names]
        if "frame" not in self._frames_table.schema.names:
            missing.append(f"column 'frame' of {FRAMES_FILE}")
        if missing:
            raise StoreError(f"{clips_path}: missing {', '.join(missing)}")
        self.metadata = meta
        self.labels: list[str] = json.loads(meta["orch.labels"])
        self.frame_shape: tuple[int, ...] = tuple(json.loads(meta["orch.frame_shape"]))
        self.fingerprint: str = meta["orch.fingerprint"]
        self._chunks, self._chunk_starts = _map_tensor_chunks(self._frames_table.column("frame"), np.uint8,
                                                              self.frame_shape)
        self._offsets = self.clips.column("frame_offset").to_numpy()
        self._counts = self.clips.column("frame_count").to_numpy()
        self._check_layout()
        self.feature_shapes: dict[str, tuple[int, ...]] = {
            k: tuple(v) for k, v in json.loads(meta.get("orch.features", "{}")).items()}
        self._features: dict[str, list[np.ndarray]] = {}
        if self.feature_shapes:
            self._open_features()

    def _open_features(self) -> None:
        path = self.path / FEATURES_FILE
        if not path.is_file():
            raise StoreError(f"{path}: missing — the store's metadata lists features {sorted(self.feature_shapes)}")
        try:
            table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
        except pa.ArrowInvalid as e:
            raise StoreError(f"{path}: not a readable Arrow file ({e})") from e
        if table.num_rows != self._frames_table.num_rows:
            raise StoreError(f"{path}: {table.num_rows} rows, {FRAMES_FILE} has {self._frames_table.num_rows}")
        for name, shape in self.feature_shapes.items():
            if name not in table.schema.names:
                raise StoreError(f"{path}: no column {name!r}")
            chunks, starts = _map_tensor_chunks(table.column(name), np.float32, shape)
            if not np.array_equal(starts, self._chunk_starts):
                raise StoreError(f"{path}: record batches not aligned with {FRAMES_FILE}'s")
            self._features[name] = chunks

    def _check_layout(self) -> None:
        """Every clip's frames lie inside one record batch (what StoreWriter writes)."""
        total = int(self._counts.sum()) if len(self._counts) else 0
        if total != self._frames_table.num_rows:
            raise StoreError(
                f"{self.path}: clips table counts {total} frames, frames table holds {self._frames_table.num_rows}"
            )
        if not len(self._offsets):
            return
        ends = np.append(self._chunk_starts[1:], self._frames_table.num_rows)
        chunk = np.searchsorted(self._chunk_starts, self._offsets, side="right") - 1
        bad = np.flatnonzero((self._offsets < 0) | (self._counts <= 0) | (self._offsets + self._counts > ends[chunk]))
        if len(bad):
            clip_id = self.clips.column("clip_id")[int(bad[0])].as_py()
            raise StoreError(f"{self.path}: clip {clip_id!r} (and {len(bad) - 1} more) lies outside one record batch of {FRAMES_FILE}")

    # -- metadata -----------------------------------------------------------------------
    def __len__(self) -> int:
        return self.clips.num_rows

    def column(self, name: str) -> np.ndarray:
        return self.clips.column(name).to_numpy(zero_copy_only=False)

    def indices(self, split: str | None = None) -> np.ndarray:
        """Row indices of the clips in ``split`` (all clips when None)."""
        if split is None:
            return np.arange(len(self))
        return np.flatnonzero(self.column("split") == split)

    def frame_count(self, i: int) -> int:
        return int(self._counts[i])

    # -- frames -------------------------------------------------------------------------
    def frames(self, i: int) -> np.ndarray:
        """All stored frames of clip ``i`` as a read-only view into the mapped file."""
        off, n = int(self._offsets[i]), int(self._counts[i])
        c = int(np.searchsorted(self._chunk_starts, off, side="right") - 1)
        local = off - int(self._chunk_starts[c])
        return self._chunks[c][local: local + n]

    def features(self, i: int, name: str) -> np.ndarray:
        """Feature ``name`` of every stored frame of clip ``i`` ([T, ...] float32), a
        read-only view into the mapped file."""
        if name not in self._features:
            raise KeyError(f"{self.path}: no feature {name!r} (has {sorted(self._features) or 'none'}); "
                           f"ingest computes them")
        off, n = int(self._offsets[i]), int(self._counts[i])
        c = int(np.searchsorted(self._chunk_starts, off, side="right") - 1)
        local = off - int(self._chunk_starts[c])
        return self._features[name][c][local: local + n]

    def sample(self, i: int, n: int | None) -> np.ndarray:
        """``n`` frames of clip ``i`` evenly spaced (first and last included), copied;
        ``n=None`` returns the zero-copy view of all frames."""
        view = self.frames(i)
        if n is None:
            return view
        return view[uniform_indices(len(view), n)]

    def verify(self) -> None:
        """Recompute the fingerprint from the content; raise StoreError on mismatch."""
        h = hashlib.sha256()
        for i in range(len(self)):
            h.update(self.frames(i).tobytes())
        digests = {}
        for name, shape in self.feature_shapes.items():
            fh = hashlib.sha256()
            for i in range(len(self)):
                fh.update(self.features(i, name).tobytes())
            digests[name] = (list(shape), fh.hexdigest())
        got = content_fingerprint(self.clips, h.hexdigest(), self.labels, self.frame_shape, digests)
        if got != self.fingerprint:
            raise StoreError(f"{self.path}: content fingerprint {got[:12]} != recorded {self.fingerprint[:12]}")


def _prod(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape))


def _map_tensor_chunks(column: pa.ChunkedArray, dtype, shape: tuple[int, ...]) -> tuple[list[np.ndarray], np.ndarray]:
    """Zero-copy numpy views [rows, *shape] of each chunk of a fixed-shape tensor column,
    and the first row of each chunk."""
    chunks, starts, start = [], [], 0
    per_row = _prod(shape)
    for chunk in column.chunks:
        storage = chunk.storage  # FixedSizeListArray over the values
        values = storage.values
        arr = np.frombuffer(values.buffers()[1], dtype=dtype, count=len(values), offset=values.offset * np.dtype(dtype).itemsize)
        arr = arr[storage.offset * per_row:][: len(chunk) * per_row]
        chunks.append(arr.reshape((len(chunk), *shape)))
        starts.append(start)
        start += len(chunk)
    return chunks, np.asarray(starts, dtype=np.int64)
