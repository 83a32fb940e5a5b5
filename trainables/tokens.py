"""Per-frame token features, chosen by name. Each maps a clip's frames [T, H, W(, C)] to a
float32 array [T, D] that the model's Linear + LayerNorm embeds.

- ``pixel_diff``: the difference of each frame to the clip's first (onset) frame, area-pooled
  to ``grid`` x ``grid`` and flattened. Micro-expressions are a few pixels of motion, so the
  difference to onset is where the signal is; pooling keeps the token small.
"""

from __future__ import annotations

import cv2
import numpy as np

DIFF_SCALE = 1.0 / 32.0  # grey levels -> roughly unit range for ~1 px motion at an edge


def pixel_diff(frames: np.ndarray, grid: int) -> np.ndarray:
    f = frames.astype(np.float32)
    if f.ndim == 4:  # colour: average the channels
        f = f.mean(axis=-1)
    diff = f - f[:1]
    t, h, w = diff.shape
    if h % grid == 0 and w % grid == 0:
        pooled = diff.reshape(t, grid, h // grid, grid, w // grid).mean(axis=(2, 4))
    else:
        pooled = np.stack([cv2.resize(d, (grid, grid), interpolation=cv2.INTER_AREA) for d in diff])
    return (pooled.reshape(t, grid * grid) * DIFF_SCALE).astype(np.float32)


TOKENS = {"pixel_diff": pixel_diff}


def token_features(name: str, frames: np.ndarray, grid: int) -> np.ndarray:
    try:
        fn = TOKENS[name]
    except KeyError:
        raise ValueError(f"data.token: unknown token {name!r}; known: {sorted(TOKENS)}") from None
    return fn(frames, grid)
