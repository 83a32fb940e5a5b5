"""Reading a clip's frames from image files, with the reason for every failure.

A source describes a clip without decoding it (``ClipSource``); ``read_frames`` decodes it
in a worker. Every problem is a ``ClipError`` naming the file and the reason: a missing
file, a zero-byte file, an image OpenCV cannot decode, a frame of another size than the
clip's first.
"""

from __future__ import annotations

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
    frame_paths: tuple[Path, ...]
    onset: int | None = None  # indices into frame_paths
    apex: int | None = None
    offset: int | None = None
    # frames known to be unreadable (e.g. a dataset's damaged-frame list): index -> reason;
    # each is replaced by its nearest readable neighbour in time, and the report says so
    known_bad: dict[int, str] = field(default_factory=dict)


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


def read_frames(src: ClipSource, color: str) -> tuple[np.ndarray, list[str]]:
    """All frames of a clip as [T, H, W(, 3)] uint8, and notes on known-bad frames replaced."""
    if not src.frame_paths:
        raise ClipError(f"clip {src.clip_id!r}: no frames")
    good = [i for i in range(len(src.frame_paths)) if i not in src.known_bad]
    if not good:
        raise ClipError(f"clip {src.clip_id!r}: every frame is on the damaged list")
    decoded: dict[int, np.ndarray] = {}
    for i in good:
        img = read_image(src.frame_paths[i], color)
        if decoded and img.shape != next(iter(decoded.values())).shape:
            raise ClipError(f"{src.frame_paths[i]}: frame size {img.shape} differs from the clip's "
                            f"{next(iter(decoded.values())).shape}")
        decoded[i] = img
    notes = []
    frames = []
    good_arr = np.asarray(good)
    for i in range(len(src.frame_paths)):
        if i in decoded:
            frames.append(decoded[i])
        else:
            near = int(good_arr[np.argmin(np.abs(good_arr - i))])
            frames.append(decoded[near])
            notes.append(f"{src.frame_paths[i].name} ({src.known_bad[i]}): replaced by {src.frame_paths[near].name}")
    return np.stack(frames), notes
