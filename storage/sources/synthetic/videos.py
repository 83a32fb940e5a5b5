"""Writing frames as an MP4 video, and damaging one the ways real files are damaged (for tests).

``write_mp4`` encodes with OpenCV (fourcc ``mp4v``, MPEG-4 part 2, lossy), which puts the
``moov`` atom (the index: frame sizes, offsets, timing) after the media data; ``faststart``
moves it to the front, as cameras and ``ffmpeg -movflags faststart`` do. The damage helpers
edit a written file in place: ``truncate`` cuts it short (an interrupted download),
``drop_last_frames`` removes the last frames' data but leaves the index claiming them,
``zero_last_frames`` overwrites the last frames' data with zeros.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}  # atoms on the path to the sample table


def write_mp4(frames: np.ndarray, path: str | Path, fps: float, faststart: bool = True) -> Path:
    """Encode uint8 frames, gray [T, H, W] or RGB [T, H, W, 3], as an mp4v ``.mp4`` at ``fps``."""
    frames = np.asarray(frames)
    path = Path(path)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[3] != 3):
        raise ValueError(f"frames must be uint8 [T, H, W] or [T, H, W, 3], got {frames.dtype} {frames.shape}")
    t, h, w = frames.shape[:3]
    if t == 0:
        raise ValueError("no frames to write")
    if h % 2 or w % 2:  # OpenCV would silently crop the odd row / column
        raise ValueError(f"mp4v needs an even width and height, got {w}x{h}")
    if path.suffix.lower() != ".mp4":  # OpenCV picks the container from the suffix
        raise ValueError(f"{path}: the name must end in .mp4")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise ValueError(f"{path}: OpenCV cannot write mp4v at {fps} fps, {w}x{h}")
    to_bgr = cv2.COLOR_GRAY2BGR if frames.ndim == 3 else cv2.COLOR_RGB2BGR
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, to_bgr))
    finally:
        writer.release()
    if faststart:
        path.write_bytes(_faststart(path.read_bytes()))
    return path


def truncate(path: str | Path, keep_fraction: float) -> Path:
    """Keep only the first ``keep_fraction`` of the file's bytes: a download cut short."""
    if not 0.0 <= keep_fraction < 1.0:
        raise ValueError(f"keep_fraction must be in [0, 1), got {keep_fraction}")
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    return path


def drop_last_frames(path: str | Path, n: int) -> Path:
    """Remove the data of the last ``n`` frames of a faststart file and shrink its ``mdat``
    atom to match: a well-formed file whose index claims ``n`` frames more than it holds."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    kind, pos, size, header = list(_atoms(data, 0, len(data)))[-1]
    if kind != b"mdat" or header != 8:
        raise ValueError(f"{path}: not a faststart mp4 (its last atom is {kind!r})")
    cut = pos + size - sum(length for _, length in _samples(data)[-n:])
    struct.pack_into(">I", data, pos, cut - pos)
    path.write_bytes(data[:cut])
    return path


def zero_last_frames(path: str | Path, n: int) -> Path:
    """Overwrite the data of the last ``n`` frames with zeros, leaving the index intact."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    for offset, size in _samples(data)[-n:]:
        data[offset:offset + size] = bytes(size)
    path.write_bytes(data)
    return path


def _atoms(buf: bytes | bytearray, start: int, end: int) -> Iterator[tuple[bytes, int, int, int]]:
    """(type, offset, size, header size) of each atom in ``buf[start:end]``."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", buf, pos)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", buf, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        yield kind, pos, size, header
        pos += size


def _leaves(buf: bytes | bytearray, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, offset, size) of each atom under ``buf[start:end]`` outside ``_CONTAINERS``."""
    for kind, pos, size, header in _atoms(buf, start, end):
        if kind in _CONTAINERS:
            yield from _leaves(buf, pos + header, pos + size)
        else:
            yield kind, pos, size


def _faststart(data: bytes) -> bytes:
    """Move the ``moov`` atom before the first ``mdat``, shifting every chunk offset (``stco``
    / ``co64``) that points into the data it now precedes."""
    top = list(_atoms(data, 0, len(data)))
    moov_pos, moov_size = next((pos, size) for kind, pos, size, _ in top if kind == b"moov")
    mdat_pos = next(pos for kind, pos, _, _ in top if kind == b"mdat")
    if moov_pos < mdat_pos:
        return data
    moov = bytearray(data[moov_pos:moov_pos + moov_size])
    for kind, pos, _ in _leaves(moov, 0, len(moov)):
        if kind in (b"stco", b"co64"):
            fmt = ">I" if kind == b"stco" else ">Q"
            width = struct.calcsize(fmt)
            (count,) = struct.unpack_from(">I", moov, pos + 12)
            for at in range(pos + 16, pos + 16 + count * width, width):
                (offset,) = struct.unpack_from(fmt, moov, at)
                if mdat_pos <= offset < moov_pos:
                    struct.pack_into(fmt, moov, at, offset + moov_size)
    return data[:mdat_pos] + bytes(moov) + data[mdat_pos:moov_pos] + data[moov_pos + moov_size:]


def _samples(data: bytes | bytearray) -> list[tuple[int, int]]:
    """(file offset, size) of every frame of a one-track file, from its sample table
    (``stsz`` sizes, ``stsc`` frames per chunk, ``stco`` chunk offsets)."""
    moov = next((pos, size, header) for kind, pos, size, header in _atoms(data, 0, len(data)) if kind == b"moov")
    table = {kind: pos for kind, pos, _ in _leaves(data, moov[0] + moov[2], moov[0] + moov[1])}
    fixed, count = struct.unpack_from(">II", data, table[b"stsz"] + 12)
    sizes = [fixed] * count if fixed else list(struct.unpack_from(f">{count}I", data, table[b"stsz"] + 20))
    (n_chunks,) = struct.unpack_from(">I", data, table[b"stco"] + 12)
    chunks = struct.unpack_from(f">{n_chunks}I", data, table[b"stco"] + 16)
    (n_runs,) = struct.unpack_from(">I", data, table[b"stsc"] + 12)
    runs = [struct.unpack_from(">III", data, table[b"stsc"] + 16 + 12 * k) for k in range(n_runs)]
    out: list[tuple[int, int]] = []
    for c, chunk_offset in enumerate(chunks, 1):
        per_chunk = [frames for first, frames, _ in runs if first <= c][-1]
        offset = chunk_offset
        for size in sizes[len(out):len(out) + per_chunk]:
            out.append((offset, size))
            offset += size
    return out
