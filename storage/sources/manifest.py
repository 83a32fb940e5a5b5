"""A generic manifest: one CSV (or xlsx) row per clip, for data in no official layout.

Columns (names matched loosely): ``path`` — a video file or a folder of numbered frames,
relative to the data root (the manifest's folder unless given); ``subject``; ``label``
(empty: unknown); ``fps``; optional ``onset``/``apex``/``offset``; optional ``split``
(default ``all``); optional ``clip_id`` (default: the path). Videos decode through decord
(``sources.video``), frame folders through OpenCV.

Onset/apex/offset are frame numbers: 0-based frame indices in a video, the numbers in the
file names of a frame folder. When onset and offset are both given, the clip is the frames
onset..offset; otherwise the whole video or folder. A path that leaves the data root is
refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from storage.ingest import Skip
from storage.sources.frames import ClipError, ClipSource, IMAGE_SUFFIXES, inside, numbered_frames
from storage.sources.sheets import read_sheet

DATASET = "manifest"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
DEFAULT_SPLIT = "all"

COLUMNS = {
    "path": ("path", "file", "video", "folder", "frames", "source"),
    "subject": ("subject", "subject id", "participant"),
    "label": ("label", "emotion", "class"),
    "fps": ("fps", "frame rate", "framerate"),
    "onset": ("onset", "onset frame"), "apex": ("apex", "apex frame"), "offset": ("offset", "offset frame"),
    "split": ("split", "set", "subset"),
    "clip_id": ("clip_id", "clip", "id", "name"),
}
OPTIONAL = ("label", "fps", "onset", "apex", "offset", "split", "clip_id")


@dataclass(frozen=True)
class Manifest:
    path: Path
    columns_used: dict[str, str]
    labels: list[str]  # the label vocabulary: given, or the labels found, sorted
    sources: list[ClipSource]
    skipped: list[Skip]


def _int(value: str, what: str) -> int:
    try:
        n = int(float(value))
    except ValueError:
        raise ClipError(f"{what} {value!r} is not a frame number") from None
    if n < 0 or float(value) != n:
        raise ClipError(f"{what} {value!r} is not a frame number")
    return n


def _source(root: Path, get, n_row: int, fps_default: float | None, seen: dict[str, str]) -> ClipSource:
    """One row as a ClipSource; ClipError (the row's reason) if it cannot be one."""
    rel = get("path")
    if not rel:
        raise ClipError("empty path")
    path = inside(root, rel)
    if path is None:
        raise ClipError(f"path {rel!r} leaves the data root {root}")
    if not get("subject"):
        raise ClipError("empty subject")
    try:
        fps = float(get("fps")) if get("fps") else fps_default
    except ValueError:
        raise ClipError(f"fps {get('fps')!r} is not a number") from None
    if fps is None or not fps > 0:
        raise ClipError("no frame rate (an fps column, or --fps)" if fps is None else f"fps {fps} is not positive")
    marks = {f: _int(get(f), f) if get(f) else None for f in ("onset", "apex", "offset")}
    on, ap, off = marks["onset"], marks["apex"], marks["offset"]
    if on is not None and off is not None and on > off:
        raise ClipError(f"onset after offset ({on} > {off})")
    if ap is not None and ((on is not None and ap < on) or (off is not None and ap > off)):
        raise ClipError(f"apex {ap} outside onset..offset ({on}..{off})")
    span = on is not None and off is not None
    clip_id = get("clip_id") or rel.replace("\\", "/").strip("/")
    if clip_id in seen:
        raise ClipError(f"clip id {clip_id!r} already used by {seen[clip_id]}")
    common = dict(clip_id=clip_id, dataset=DATASET, subject=get("subject"),
                  split=get("split") or DEFAULT_SPLIT, label=get("label") or None, source_fps=fps)
    start = on if span else 0
    rel_marks = {f: None if v is None else v - start for f, v in marks.items()}
    if path.suffix.lower() in VIDEO_SUFFIXES:
        if not path.is_file():
            raise ClipError(f"{path}: video file does not exist")
        src = ClipSource(**common, video=path, video_start=start, video_stop=off + 1 if span else None, **rel_marks)
    elif path.is_dir():
        frames, first = numbered_frames(path)
        lo = on - first if span else 0
        hi = off - first + 1 if span else len(frames)
        if span and not (0 <= lo and hi <= len(frames)):
            raise ClipError(f"{path}: onset..offset {on}..{off} not among the folder's frames "
                            f"{first}..{first + len(frames) - 1}")
        rel_marks = {f: None if v is None else v - (first + lo) for f, v in marks.items()}
        bad = [f"{f} {marks[f]}" for f, v in rel_marks.items() if v is not None and not 0 <= v < hi - lo]
        if bad:
            raise ClipError(f"{path}: {', '.join(bad)} not among the folder's frames")
        src = ClipSource(**common, frame_paths=tuple(frames[lo:hi]), **rel_marks)
    elif path.exists():
        raise ClipError(f"{path}: neither a video ({', '.join(VIDEO_SUFFIXES)}) nor a folder of frames "
                        f"({', '.join(IMAGE_SUFFIXES)})")
    else:
        raise ClipError(f"{path}: does not exist")
    seen[clip_id] = f"row {n_row}"
    return src


def read_manifest(path: str | Path, root: str | Path | None = None, fps: float | None = None,
                  labels: list[str] | None = None) -> Manifest:
    """Every row as a ClipSource or a Skip with its reason. ``labels`` fixes the vocabulary
    (a row with another label is a skip); by default it is the labels found, sorted."""
    sheet = read_sheet(path)
    cols = sheet.columns(COLUMNS, optional=OPTIONAL)
    root = Path(root) if root is not None else sheet.path.parent
    found = sorted({r[cols["label"]] for r in sheet.rows if "label" in cols and r[cols["label"]]})
    vocab = list(labels) if labels is not None else found
    sources, skipped, seen = [], [], {}
    for i, cells in enumerate(sheet.rows):
        if not any(cells):
            continue
        get = lambda f: cells[cols[f]] if f in cols else ""  # noqa: E731
        item = f"{sheet.path.name} row {i + 2} ({get('path') or '?'})"
        try:
            if get("label") and get("label") not in vocab:
                raise ClipError(f"unknown label {get('label')!r} (labels: {vocab})")
            sources.append(_source(root, get, i + 2, fps, seen))
        except ClipError as e:
            skipped.append(Skip(item, str(sheet.path), str(e)))
    used = {f: sheet.header[i] for f, i in cols.items()}
    return Manifest(sheet.path, used, vocab, sources, skipped)
