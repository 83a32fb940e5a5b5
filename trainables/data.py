"""A split of the store as tensors for one trial: the N sampled frames of every clip turned
into per-frame tokens, padded to the longest clip, with a mask of the real frames.

Built once per trial (the store is opened once per process and read zero-copy; only the
sampled frames are copied), then batches are plain indexing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from storage.sampling import uniform_indices
from storage.store import UNLABELLED, FrameStore
from trainables.tokens import token_features


@dataclass
class SplitData:
    split: str
    clip_ids: list[str]
    tokens: torch.Tensor  # [N, T_max, D] float32
    mask: torch.Tensor  # [N, T_max] bool, True where a real frame is
    labels: torch.Tensor  # [N] int64

    def __len__(self) -> int:
        return len(self.clip_ids)

    @property
    def token_dim(self) -> int:
        return int(self.tokens.shape[-1])

    def to(self, device: torch.device | str) -> "SplitData":
        """The split's tensors on the training device, moved once per trial."""
        return SplitData(self.split, self.clip_ids, self.tokens.to(device), self.mask.to(device),
                         self.labels.to(device))


def load_split(store: FrameStore, split: str, length: int | None, token: str, token_grid: int,
               max_frames: int) -> SplitData:
    """Tokens of every clip of ``split`` with ``length`` frames each (None: all)."""
    rows = store.indices(split)
    if len(rows) == 0:
        raise ValueError(f"split {split!r}: no clips in store {store.path}")
    labels = store.column("label_index")[rows]
    ids = store.column("clip_id")[rows]
    unlabelled = ids[labels == UNLABELLED]
    if len(unlabelled):
        raise ValueError(
            f"split {split!r}: {len(unlabelled)} clip(s) have no label (e.g. {unlabelled[0]!r}); "
            "a split used for training or evaluation needs labels"
        )
    if token == "flow_roi" and "flow_roi" not in store.feature_shapes:
        raise ValueError(f"data.token: 'flow_roi' needs the store's flow features, and {store.path} has none "
                         f"(ingest computes them; or use token 'pixel_diff')")

    def frames_of(i: int) -> np.ndarray:
        n = store.frame_count(i)
        return np.arange(n) if length is None else uniform_indices(n, length)

    feats = [token_features(token, store, int(i), frames_of(int(i)), token_grid) for i in rows]
    t_max = max(len(f) for f in feats)
    if t_max > max_frames:
        worst = ids[int(np.argmax([len(f) for f in feats]))]
        raise ValueError(
            f"split {split!r}: clip {worst!r} has {t_max} frames, more than model.max_frames={max_frames}"
        )
    tokens = np.zeros((len(feats), t_max, feats[0].shape[1]), np.float32)
    mask = np.zeros((len(feats), t_max), bool)
    for k, f in enumerate(feats):
        tokens[k, : len(f)] = f
        mask[k, : len(f)] = True
    return SplitData(split, [str(i) for i in ids], torch.from_numpy(tokens), torch.from_numpy(mask),
                     torch.from_numpy(labels.astype(np.int64)))
