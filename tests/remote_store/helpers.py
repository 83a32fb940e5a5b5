"""Small stores written directly (random frames, no rendering): fast to make, distinct
fingerprints."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from storage.store import Clip, StoreWriter


def random_store(path: Path, seed: int, clips: int = 6, frames: int = 10, side: int = 32) -> Path:
    rng = np.random.default_rng(seed)
    with StoreWriter(path, labels=["a", "b"], frame_shape=(side, side)) as w:
        for i in range(clips):
            w.add(Clip(f"c{i}", "rand", f"s{i % 3}", "train", "ab"[i % 2], 100.0,
                       rng.integers(0, 256, (frames, side, side), dtype=np.uint8)))
    return path
