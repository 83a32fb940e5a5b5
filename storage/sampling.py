"""Which frames of a clip a trial sees: N frames evenly spaced over the clip, first and
last included (N in {4, 8, 12, 16}), or all of them."""

from __future__ import annotations

import numpy as np

ALL = "all"


def parse_length(value: int | str) -> int | None:
    """``4`` / ``"4"`` -> 4; ``"all"`` -> None (every frame)."""
    if isinstance(value, str):
        if value.strip().lower() == ALL:
            return None
        if not value.strip().isdigit():
            raise ValueError(f"length: expected a positive integer or 'all', got {value!r}")
        value = int(value)
    if value < 2:
        raise ValueError(f"length: at least 2 frames are needed (first and last), got {value}")
    return int(value)


def length_name(n: int | None) -> str:
    return ALL if n is None else str(n)


def uniform_indices(n_frames: int, n: int | None) -> np.ndarray:
    """``n`` indices evenly spaced over ``[0, n_frames - 1]``, first and last included.

    ``n=None`` means all frames. A clip shorter than ``n`` repeats frames (nearest
    neighbour in time) rather than inventing new ones.
    """
    if n_frames <= 0:
        raise ValueError(f"n_frames must be positive, got {n_frames}")
    if n is None:
        return np.arange(n_frames)
    return np.rint(np.linspace(0, n_frames - 1, n)).astype(np.int64)
