"""A split of the store as tensors for one trial: the N sampled frames of every clip turned
into per-frame tokens, padded to the longest clip, with a mask of the real frames.

Built once per trial (the store is opened once per process and read zero-copy; only the
sampled frames are copied), then batches are plain indexing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from storage.sampling import length_name, uniform_indices
from storage.store import FrameStore
from trainables.model import ModelConfig
from trainables.tokens import token_features


ROLES = ("train", "validation", "test")


@dataclass
class SplitData:
    role: str  # "train", "validation" or "test": what the data may be used for (trainables.fit checks it)
    clip_ids: list[str]
    tokens: torch.Tensor  # [N, T_max, D] float32
    mask: torch.Tensor  # [N, T_max] bool, True where a real frame is
    labels: torch.Tensor  # [N] int64; -1 where a clip is unlabelled (test roles only)

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"role: expected one of {ROLES}, got {self.role!r}")

    def __len__(self) -> int:
        return len(self.clip_ids)

    @property
    def token_dim(self) -> int:
        return int(self.tokens.shape[-1])

    @property
    def labelled(self) -> bool:
        return bool((self.labels >= 0).all())

    def to(self, device: torch.device | str) -> "SplitData":
        """The split's tensors on the training device, moved once per trial."""
        return SplitData(self.role, self.clip_ids, self.tokens.to(device), self.mask.to(device),
                         self.labels.to(device))


def fit_to_store(model: ModelConfig, store: FrameStore, lengths: Iterable[int | None] = ()) -> ModelConfig:
    """``model`` with ``max_frames`` 0 ("from the store") resolved: the store's longest clip,
    or the largest of ``lengths`` (frames sampled per clip) if that is longer — so learned
    positions cover every clip the store holds at every length. An explicit value is kept
    (``refused_clips`` names what it cannot take)."""
    if model.max_frames:
        return model
    longest = int(store.column("frame_count").max()) if len(store) else 1
    return dataclasses.replace(model, max_frames=max([longest, *(n for n in lengths if n is not None)]))


def frame_limit(model: ModelConfig) -> int | None:
    """The most frames a clip may have for ``model`` (None: any — normalised-time positions)."""
    return model.max_frames if model.positions == "learned" else None


def refused_clips(store: FrameStore, rows: np.ndarray, length: int | None, model: ModelConfig) -> list[str]:
    """The clips of ``rows`` that ``model`` cannot take at ``length``, each as
    ``"CLIP_ID (T frames)"``, longest first."""
    limit = frame_limit(model)
    rows = np.asarray(rows, np.int64)
    if limit is None or len(rows) == 0:
        return []
    frames = store.column("frame_count")[rows]
    n = frames if length is None else np.full(len(rows), length)
    bad = np.flatnonzero(n > limit)
    bad = bad[np.argsort(-n[bad], kind="stable")]
    ids = store.column("clip_id")[rows]
    return [f"{ids[k]} ({frames[k]} frames" + (f", sampled {length_name(length)}" if length else "") + ")"
            for k in bad]


def load_split(store: FrameStore, rows: np.ndarray, role: str, classes: np.ndarray, length: int | None,
               token: str, token_grid: int, max_frames: int | None, what: str = "") -> SplitData:
    """Tokens of the clips ``rows`` of ``store`` with ``length`` frames each (None: all);
    ``max_frames``: the most a clip may have (``frame_limit``; None: any).

    ``classes`` is the clip's class per store row (``storage.selection.LabelMap``); train and
    validation need every clip labelled, a test may be wholly unlabelled (competition test
    sets: predictions only). ``what`` names the selection in errors.
    """
    what = what or role
    rows = np.asarray(rows, np.int64)
    if len(rows) == 0:
        raise ValueError(f"{what}: no clips selected in store {store.path}")
    labels = classes[rows]
    ids = store.column("clip_id")[rows]
    unlabelled = ids[labels < 0]
    if len(unlabelled) and (role != "test" or len(unlabelled) < len(ids)):
        raise ValueError(
            f"{what}: {len(unlabelled)} of {len(ids)} clip(s) have no label (e.g. {unlabelled[0]!r}); "
            + ("training and validation need labels" if role != "test" else "a test set is labelled wholly or not at all")
        )
    if token == "flow_roi" and "flow_roi" not in store.feature_shapes:
        raise ValueError(f"data.token: 'flow_roi' needs the store's flow features, and {store.path} has none "
                         f"(ingest computes them; or use token 'pixel_diff')")

    def frames_of(i: int) -> np.ndarray:
        n = store.frame_count(i)
        return np.arange(n) if length is None else uniform_indices(n, length)

    feats = [token_features(token, store, int(i), frames_of(int(i)), token_grid) for i in rows]
    t_max = max(len(f) for f in feats)
    if max_frames is not None and t_max > max_frames:
        worst = ids[int(np.argmax([len(f) for f in feats]))]
        raise ValueError(
            f"{what}: clip {worst!r} has {t_max} frames, more than model.max_frames={max_frames}"
        )
    tokens = np.zeros((len(feats), t_max, feats[0].shape[1]), np.float32)
    mask = np.zeros((len(feats), t_max), bool)
    for k, f in enumerate(feats):
        tokens[k, : len(f)] = f
        mask[k, : len(f)] = True
    return SplitData(role, [str(i) for i in ids], torch.from_numpy(tokens), torch.from_numpy(mask),
                     torch.from_numpy(labels.astype(np.int64)))
