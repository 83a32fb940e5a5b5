"""Reading frames from a video file with decord, with the reason for every failure.

Every problem is a ``ClipError`` naming the file and the reason: a missing or zero-byte
file, an MP4 cut short, a file decord cannot open, frames asked for outside the video, a
container that claims more frames than it holds, frames that do not decode, decoding that
stalls, frames of an unexpected shape. decord 0.6.0's traps, as found here:

- Its frame count is the number of packets the demuxer reads, not the container's claim:
  an MP4 cut at a frame boundary opens cleanly, shorter. The claim is taken from OpenCV.
- An MP4 cut inside its media data fails to open ("moov atom not found", "av_read_frame
  failed") unless the cut falls inside the last frame, which then fails to decode or
  decodes to garbage; so MP4s are first checked for an atom running past the end.
- A damaged frame can fail the read of any earlier frame, varying from run to run: decord
  feeds its decoder thread packets ahead of the frame asked for, as fast as it can.
- Frames whose width is not a multiple of 32 come back with padded rows folded into the
  channel axis when the padded row length divides by the width (widths 16, 24, 48, 72:
  [H, W, 4] or [H, W, 6]); ``get_batch`` then fails outright, so frames are read one at
  a time and unpadded.
- It is reported to hang reading past the real end of some files (not reproduced here):
  decoding runs in a daemon thread, given up after ``timeout_s``; a stuck decode cannot
  keep the process alive.
"""

from __future__ import annotations

import re
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import decord
import numpy as np

from storage.sources.frames import ClipError

DEFAULT_TIMEOUT_S = 60.0
_MP4_FIRST_ATOMS = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide"}  # what an MP4/MOV starts with
_ATOM_TYPE = re.compile(rb"[\x20-\x7e\xa9]{4}")  # four printable characters ("\xa9" is QuickTime's "©")
_DECORD_PREFIX = re.compile(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ")  # "[14:36:12] src/video/video_reader.cc:486: "
_T = TypeVar("_T")

decord.logging.set_level(decord.logging.QUIET)  # FFmpeg's own log; decord's failure to open still prints one line


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds: frames (as the container claims them and decord indexes them),
    average frame rate and frame size."""

    frame_count: int
    fps: float
    width: int
    height: int


def probe_video(path: str | Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> VideoInfo:
    """The video's frame count, frame rate and size, checked as ``read_video`` checks them."""
    path = Path(path)
    return _guarded(path, timeout_s, lambda: _open(path)[1])


def read_video(path: str | Path, indices: Sequence[int] | np.ndarray, color: str = "gray",
               timeout_s: float = DEFAULT_TIMEOUT_S) -> np.ndarray:
    """Frames ``indices`` (in that order, repeats allowed) as [len(indices), H, W] uint8 gray
    or [len(indices), H, W, 3] RGB; only those frames are decoded, within ``timeout_s`` in all."""
    if color not in ("gray", "rgb"):
        raise ValueError(f"color must be 'gray' or 'rgb', got {color!r}")
    path = Path(path)
    wanted = np.asarray(indices, dtype=np.int64)
    if wanted.ndim != 1:
        raise ValueError(f"indices must be one-dimensional, got shape {wanted.shape}")
    unique = np.unique(wanted)
    frames = _guarded(path, timeout_s, lambda: _decode(*_open(path), path, unique))[np.searchsorted(unique, wanted)]
    return frames if color == "rgb" else _gray(frames)


def read_span(path: str | Path, start: int, stop: int | None, choose: Callable[[int], np.ndarray],
              color: str = "gray", timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[np.ndarray, int, np.ndarray]:
    """The clip that is frames [start, stop) of the video (``stop`` None: to its end), with the
    container opened once: its length n, and the frames ``choose(n)`` picks (sorted, distinct
    indices into the clip), decoded as ``read_video`` decodes them. Returns (frames, n, picked)."""
    if color not in ("gray", "rgb"):
        raise ValueError(f"color must be 'gray' or 'rgb', got {color!r}")
    path = Path(path)

    def work() -> tuple[np.ndarray, int, np.ndarray]:
        reader, info = _open(path)
        end = info.frame_count if stop is None else stop
        if end > info.frame_count:
            raise ClipError(f"{path}: the clip ends at frame {end - 1}, the video has {info.frame_count} frames")
        if end <= start:
            raise ClipError(f"{path}: empty span of frames [{start}, {end})")
        picked = np.asarray(choose(end - start), dtype=np.int64)
        return _decode(reader, info, path, picked + start), end - start, picked

    frames, n, picked = _guarded(path, timeout_s, work)
    return (frames if color == "rgb" else _gray(frames)), n, picked


def _gray(frames: np.ndarray) -> np.ndarray:
    """[N, H, W, 3] RGB to [N, H, W] gray."""
    n, h, w = frames.shape[:3]
    flat = cv2.cvtColor(frames.reshape(n * h, w, 3), cv2.COLOR_RGB2GRAY) if n else np.empty((0, w), np.uint8)
    return flat.reshape(n, h, w)


def _guarded(path: Path, timeout_s: float, work: Callable[[], _T]) -> _T:
    """``work()`` in a daemon thread; a ClipError if it runs longer than ``timeout_s``."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as e:  # re-raised in the caller's thread
            outcome["error"] = e

    thread = threading.Thread(target=run, name=f"decode {path.name}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise ClipError(f"{path}: decoding stalled for more than {timeout_s:g} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def _open(path: Path) -> tuple[decord.VideoReader, VideoInfo]:
    """A reader and what it reads, after every check that needs no decoding beyond frame 0."""
    if not path.is_file():
        raise ClipError(f"{path}: missing")
    if path.stat().st_size == 0:
        raise ClipError(f"{path}: empty file (0 bytes)")
    _check_mp4_atoms(path)
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        n, fps = len(reader), float(reader.get_avg_fps())
    except Exception as e:  # decord raises RuntimeError, DECORDError or AssertionError
        raise ClipError(f"{path}: not a readable video ({_summary(e)})") from None
    capture = cv2.VideoCapture(str(path))
    claimed = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    capture.release()
    if claimed > n:
        raise ClipError(f"{path}: the container claims {claimed} frames but only {n} decode")
    h, w = _frame(reader, 0, n, path).shape[:2]
    return reader, VideoInfo(frame_count=n, fps=fps, width=w, height=h)


def _decode(reader: decord.VideoReader, info: VideoInfo, path: Path, unique: np.ndarray) -> np.ndarray:
    """Frames ``unique`` (sorted, distinct) of an opened video as [len(unique), H, W, 3] RGB."""
    outside = unique[(unique < 0) | (unique >= info.frame_count)]
    if outside.size:
        raise ClipError(f"{path}: asks for frame {int(outside[0])}, the video has {info.frame_count} frames")
    frames = np.empty((len(unique), info.height, info.width, 3), np.uint8)
    for k, index in enumerate(unique):
        frame = _frame(reader, int(index), info.frame_count, path)
        if frame.shape != frames.shape[1:]:
            raise ClipError(f"{path}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                            f"frame 0 is {info.width}x{info.height}")
        frames[k] = frame
    return frames


def _frame(reader: decord.VideoReader, index: int, n: int, path: Path) -> np.ndarray:
    """Frame ``index`` as [H, W, 3] RGB, its padded rows (see the module docstring) undone."""
    try:
        frame = reader[index].asnumpy()
    except Exception as e:  # DECORDError, or StopIteration when decord finds no frame
        raise ClipError(f"{path}: the container claims {n} frames but not all of them decode (decoding failed "
                        f"while reading frame {index}, there or in any later frame: {_summary(e)})") from None
    if frame.ndim != 3 or frame.shape[2] < 3:
        raise ClipError(f"{path}: frame {index} has shape {frame.shape}, not [H, W, 3]")
    h, w, c = frame.shape
    if c > 3:  # rows of c * w bytes, the first 3 * w of them the pixels
        frame = frame.reshape(h, w * c)[:, :3 * w].reshape(h, w, 3)
    return frame


def _check_mp4_atoms(path: Path) -> None:
    """A ClipError if an MP4/MOV's ``moov`` or ``mdat`` atom runs past the end of the file."""
    size = path.stat().st_size
    with path.open("rb") as f:
        pos = 0
        while pos + 8 <= size:
            f.seek(pos)
            length, kind = struct.unpack(">I4s", f.read(8))
            if pos == 0 and kind not in _MP4_FIRST_ATOMS:
                return  # not an MP4/MOV
            if length == 1:
                (length,) = struct.unpack(">Q", f.read(8))
            if length < 8 or not _ATOM_TYPE.fullmatch(kind):
                return  # runs to the end of the file (0), or trailing bytes that are not an atom
            if pos + length > size and kind in (b"moov", b"mdat"):
                raise ClipError(f"{path}: not a readable video (truncated: its '{kind.decode()}' atom needs "
                                f"{length} bytes but the file ends {size - pos} bytes into it)")
            pos += length


def _summary(e: BaseException) -> str:
    """decord's error message on one line, without its timestamps and source locations."""
    lines = _DECORD_PREFIX.sub("", str(e)).strip().splitlines()
    if not lines:
        return type(e).__name__
    if lines[0].startswith("Error reading "):  # decord's whole message when FFmpeg cannot open the file
        return "FFmpeg cannot open it"
    return lines[0][:200]
