"""Per-frame token features, chosen by name. Each maps frames ``idx`` of a stored clip to a
float32 array [len(idx), D] that the model's Linear + LayerNorm embeds.

- ``flow_roi`` (the paper's input, the default): the optical flow from the onset frame to
  each frame, pooled over 18 facial regions of interest after global head motion is
  removed — computed once at ingest (``storage.preprocess.flow``) and read from the store
  zero-copy; flattened to 36 values (dx, dy per region), in pixels of the 256 x 256 face crop.
- ``pixel_diff``: the difference of each frame to the clip's first (onset) frame,
  area-pooled to ``grid`` x ``grid`` and flattened. Micro-expressions are a few pixels of
  motion, so the difference to onset is where the signal is; pooling keeps the token small.
"""

from __future__ import annotations

import cv2
import numpy as np

from storage.store import FrameStore

DIFF_SCALE = 1.0 / 32.0  # grey levels -> roughly unit range for ~1 px motion at an edge
FLOW_FEATURE = "flow_roi"  # the store's feature table the flow token reads


def pixel_diff(store: FrameStore, i: int, idx: np.ndarray, grid: int) -> np.ndarray:
    f = store.frames(i)[idx].astype(np.float32)
    if f.ndim == 4:  # colour: average the channels
        f = f.mean(axis=-1)
    diff = f - f[:1]
    t, h, w = diff.shape
    if h % grid == 0 and w % grid == 0:
        pooled = diff.reshape(t, grid, h // grid, grid, w // grid).mean(axis=(2, 4))
    else:
        pooled = np.stack([cv2.resize(d, (grid, grid), interpolation=cv2.INTER_AREA) for d in diff])
    return (pooled.reshape(t, grid * grid) * DIFF_SCALE).astype(np.float32)


def flow_roi(store: FrameStore, i: int, idx: np.ndarray, grid: int) -> np.ndarray:
    f = store.features(i, FLOW_FEATURE)[idx]
    return np.ascontiguousarray(f.reshape(len(idx), -1), dtype=np.float32)


TOKENS = {"flow_roi": flow_roi, "pixel_diff": pixel_diff}


def token_features(name: str, store: FrameStore, i: int, idx: np.ndarray, grid: int) -> np.ndarray:
    try:
        fn = TOKENS[name]
    except KeyError:
        raise ValueError(f"data.token: unknown token {name!r}; known: {sorted(TOKENS)}") from None
    return fn(store, i, idx, grid)
