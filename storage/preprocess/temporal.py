"""Temporal normalisation: high-speed video is resampled to 100 fps, as the paper does for
DFME's 200/300/500 fps clips. Nothing is upsampled: sources at or below the target keep
their own frame rate."""

from __future__ import annotations

import numpy as np

TARGET_FPS = 100.0


def stored_fps(source_fps: float, target_fps: float = TARGET_FPS) -> float:
    """The frame rate a clip is stored at."""
    return float(min(source_fps, target_fps))


def resample_indices(n_frames: int, source_fps: float, target_fps: float = TARGET_FPS) -> np.ndarray:
    """Indices of the source frames kept at ``target_fps``.

    Every k-th frame where ``source_fps`` is a multiple k of the target; otherwise the frame
    nearest to each target instant. The first frame is always kept.
    """
    if n_frames <= 0:
        raise ValueError(f"n_frames must be positive, got {n_frames}")
    if source_fps <= 0:
        raise ValueError(f"source_fps must be positive, got {source_fps}")
    if source_fps <= target_fps:
        return np.arange(n_frames)
    ratio = source_fps / target_fps
    if float(ratio).is_integer():
        return np.arange(0, n_frames, int(ratio))
    n_out = int(np.floor((n_frames - 1) / ratio)) + 1
    return np.minimum(np.rint(np.arange(n_out) * ratio).astype(np.int64), n_frames - 1)


def resample_index(index: int, n_frames: int, source_fps: float, target_fps: float = TARGET_FPS) -> int:
    """Where source frame ``index`` (an onset, apex or offset) lands after resampling: the
    kept frame nearest in time."""
    kept = resample_indices(n_frames, source_fps, target_fps)
    return int(np.argmin(np.abs(kept - index)))
