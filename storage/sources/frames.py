"""Reading a clip's frames — image files or a span of a video — with the reason for every
failure.

A source describes a clip without decoding it (``ClipSource``): a list of frame files, or a
video file and the span of its frames the clip is. ``read_clip`` decodes it in a worker,
only the frames asked for (temporal normalisation keeps every k-th frame of high-speed
sources, so most are never decoded). Every problem is a ``ClipError`` naming the file and
the reason: a missing file, a zero-byte file, an image OpenCV cannot decode, a frame of
another size than the clip's first, a video decord cannot read (``sources.video``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np


class ClipError(Exception):
    """A clip that cannot be read; the message names the file and the reason."""


@dataclass(frozen=True)
class ClipSource:
    """Everything needed to read one clip, before any decoding."""

    clip_id: str
    dataset: str
    subject: str
    split: str
    label: str | None
    source_fps: float
    frame_paths: tuple[Path, ...] = ()  # a clip of image files, in time order
    video: Path | None = None  # or a clip that is frames [video_start, video_stop) of a video
    video_start: int = 0
    video_stop: int | None = None  # None: to the video's end
    onset: int | None = None  # indices into the clip's frames (0 = its first)
    apex: int | None = None
    offset: int | None = None
    # frames known to be unreadable (e.g. a dataset's damaged-frame list): index -> reason;
    # each is replaced by its nearest readable neighbour in time, and the report says so
    known_bad: dict[int, str] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        """Where the clip comes from: its video file or its frames' folder."""
        if self.video is not None:
            return str(self.video)
        return str(self.frame_paths[0].parent) if self.frame_paths else ""

    def frame_name(self, i: int) -> str:
        """How a report names the clip's frame ``i``."""
        if self.video is not None:
            return f"frame {self.video_start + i} of {self.video.name}"
        return self.frame_paths[i].name


def read_image(path: Path, color: str) -> np.ndarray:
    """One frame: [H, W] uint8 (gray) or [H, W, 3] RGB."""
    if not path.is_file():
        raise ClipError(f"{path}: missing")
    if path.stat().st_size == 0:
        raise ClipError(f"{path}: empty file (0 bytes)")
    flag = cv2.IMREAD_GRAYSCALE if color == "gray" else cv2.IMREAD_COLOR
    img = cv2.imread(str(path), flag)
    if img is None:
        raise ClipError(f"{path}: not a decodable image")
    return img if color == "gray" else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_clip(src: ClipSource, color: str, choose: Callable[[int], np.ndarray] | None = None
              ) -> tuple[np.ndarray, int, np.ndarray, list[str]]:
    """The frames ``choose(n)`` picks of a clip of n frames (default: all), decoded — a
    video's container opened once. Returns (frames [T, H, W(, 3)] uint8, n, the picked
    indices, a note for each known-bad frame replaced by its nearest readable neighbour).
    ``choose`` may raise ClipError (e.g. an annotation outside the clip) before anything is
    decoded."""
    plan: dict = {}

    def needed(n: int) -> np.ndarray:
        wanted = np.arange(n) if choose is None else np.asarray(choose(n), dtype=np.int64)
        if len(wanted) and (wanted.min() < 0 or wanted.max() >= n):
            raise ClipError(f"clip {src.clip_id!r}: frame indices outside its {n} frames")
        good = np.asarray([i for i in range(n) if i not in src.known_bad])
        if not len(good):
            raise ClipError(f"clip {src.clip_id!r}: every frame is on the damaged list")
        plan["wanted"] = wanted
        plan["source_of"] = {int(i): int(i) if int(i) not in src.known_bad
                             else int(good[np.argmin(np.abs(good - i))]) for i in wanted}
        return np.asarray(sorted(set(plan["source_of"].values())), dtype=np.int64)

    if src.video is not None:
        from storage.sources.video import read_span

        images, n, picked = read_span(src.video, src.video_start, src.video_stop, needed, color)
    else:
        if not src.frame_paths:
            raise ClipError(f"clip {src.clip_id!r}: no frames")
        n = len(src.frame_paths)
        picked = needed(n)
        images = []
        for i in picked:
            img = read_image(src.frame_paths[i], color)
            if images and img.shape != images[0].shape:
                raise ClipError(f"{src.frame_paths[i]}: frame size {img.shape} differs from the clip's "
                                f"{images[0].shape}")
            images.append(img)
    decoded = dict(zip(picked.tolist(), images))
    wanted, source_of = plan["wanted"], plan["source_of"]
    notes = [f"{src.frame_name(i)} ({src.known_bad[i]}): replaced by {src.frame_name(source_of[i])}"
             for i in wanted.tolist() if i != source_of[i]]
    return np.stack([decoded[source_of[i]] for i in wanted.tolist()]), n, wanted, notes

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def frame_number(path: Path) -> int | None:
    """The frame number in a file name: its last run of digits (``img_0012.jpg`` -> 12)."""
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else None


def numbered_frames(folder: Path) -> tuple[list[Path], int]:
    """The image files of a frame folder in time order — by the number in their names, read
    as a number (``2.jpg`` before ``10.jpg``) — and the first frame's number. Raises
    ClipError naming the folder if it has no images, names without a number, two files
    with one number, or a gap (a frame missing in the middle of the clip)."""
    if not folder.is_dir():
        raise ClipError(f"{folder}: clip folder does not exist")
    images = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if not images:
        raise ClipError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    unnumbered = [p.name for p in images if frame_number(p) is None]
    if unnumbered:
        raise ClipError(f"{folder}: frame files without a number cannot be ordered: {sorted(unnumbered)[:3]}")
    images.sort(key=lambda p: (frame_number(p), p.name))
    numbers = [frame_number(p) for p in images]
    for a, b, pa, pb in zip(numbers, numbers[1:], images, images[1:]):
        if a == b:
            raise ClipError(f"{folder}: two files for frame {a} ({pa.name}, {pb.name})")
        if b != a + 1:
            missing = f"frame {a + 1}" if b == a + 2 else f"frames {a + 1}..{b - 1}"
            raise ClipError(f"{folder}: {missing} missing in the middle of the clip (after {pa.name})")
    return images, numbers[0]


def inside(root: Path, relative: str) -> Path | None:
    """``root / relative`` if it stays inside ``root`` (judged on the path as written, so
    ``..`` and absolute paths elsewhere are refused, while symlinked folders still work)."""
    base = os.path.normpath(os.path.abspath(root))
    target = os.path.normpath(os.path.join(base, relative))
    if target != base and target.startswith(base + os.sep):
        return Path(target)
    return None
