"""Source clips -> frame store, in parallel, with a report that loses nothing.

Each clip is decoded, resized to ``size`` x ``size`` and written in the sources' order (so
two ingests of the same data give the same store). A clip that cannot be read is skipped
with its reason; rows a source already set aside (bad annotations) arrive as skips too.
The report — clips written, clips skipped with reasons, frames read, time — is returned and
written as JSON beside the store (``STORE.ingest.json``).

Face crops are not done yet: frames are resized whole (``crop: "none"`` in the report).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from storage.sources.frames import ClipError, ClipSource, read_frames
from storage.store import Clip, StoreWriter


@dataclass(frozen=True)
class Skip:
    item: str  # clip id, or the annotation row
    source: str  # file or folder it came from
    reason: str


@dataclass
class IngestReport:
    store: str
    written: int = 0
    frames_read: int = 0
    seconds: float = 0.0
    crop: str = "none"
    skipped: list[Skip] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. damaged frames replaced

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @property
    def path(self) -> Path:
        return report_path(self.store)


def report_path(store: str | Path) -> Path:
    store = Path(store)
    return store.parent / f"{store.name}.ingest.json"


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    if frames.shape[1:3] == (size, size):
        return frames
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def _load(args: tuple[ClipSource, int, str]):
    """Worker: one clip -> (frames, notes) or the reason it cannot be read."""
    src, size, color = args
    cv2.setNumThreads(1)
    try:
        frames, notes = read_frames(src, color)
        return _resize(frames, size), notes, None
    except ClipError as e:
        return None, [], str(e)


def ingest(sources: Iterable[ClipSource], out: str | Path, labels: list[str], size: int = 128,
           color: str = "gray", workers: int | None = None, pre_skipped: Iterable[Skip] = (),
           progress: Callable[[int, int], None] | None = None, overwrite: bool = False) -> IngestReport:
    """Write the readable clips of ``sources`` into a store at ``out``; report everything."""
    if color not in ("gray", "rgb"):
        raise ValueError(f"color: expected 'gray' or 'rgb', got {color!r}")
    if size < 8:
        raise ValueError(f"size: at least 8 pixels, got {size}")
    sources = list(sources)
    report = IngestReport(store=str(out), skipped=list(pre_skipped))
    workers = max(1, workers or (os.cpu_count() or 1))
    shape = (size, size) if color == "gray" else (size, size, 3)
    t0 = time.time()
    jobs = [(s, size, color) for s in sources]
    with StoreWriter(out, labels=labels, frame_shape=shape, overwrite=overwrite) as writer:
        if workers == 1:
            results = map(_load, jobs)
            pool = None
        else:
            # spawned, not forked: a parent that holds threads (torch, Ray, OpenMP) can
            # deadlock forked children
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
            results = pool.map(_load, jobs, chunksize=max(1, len(jobs) // (workers * 8) or 1))
        try:
            for k, (src, (frames, notes, error)) in enumerate(zip(sources, results), 1):
                folder = str(src.frame_paths[0].parent) if src.frame_paths else ""
                if error is not None:
                    report.skipped.append(Skip(src.clip_id, folder, error))
                else:
                    writer.add(Clip(src.clip_id, src.dataset, src.subject, src.split, src.label,
                                    src.source_fps, frames, src.onset, src.apex, src.offset))
                    report.written += 1
                    report.frames_read += len(frames) - len(notes)
                    report.notes += [f"{src.clip_id}: {n}" for n in notes]
                if progress:
                    progress(k, len(sources))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    report.seconds = round(time.time() - t0, 3)
    report.path.write_text(report.to_json())
    return report
