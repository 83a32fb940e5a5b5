"""Predictions of a saved model (a run's ``model/selected.pt``) on a split of a store.

The saved file holds the best-validation parameters, the trial's config (token, length,
model) and the class names; the store must be the one the run trained on (by
fingerprint), so the tokens are computed exactly as in training.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch

from storage.selection import Selection, label_map
from storage.store import FrameStore
from trainables.config import TrialConfig
from trainables.data import frame_limit, load_split
from trainables.fit import evaluate
from trainables.model import create_model


@dataclass
class Prediction:
    clip_ids: list[str]  # the split's clips in store order (the annotation sheet's order)
    predicted: np.ndarray  # class indices, in ``classes``
    classes: list[str]


def predict(saved: bytes, store: FrameStore, split: str) -> Prediction:
    blob = torch.load(io.BytesIO(saved), map_location="cpu", weights_only=True)
    trial = TrialConfig.from_dict(blob["trial"])
    labels = label_map(trial.data.label_map, store)
    if list(labels.classes) != list(blob["classes"]):
        raise ValueError(f"the run's classes {blob['classes']} differ from label map "
                         f"{trial.data.label_map!r} on {store.path}: {list(labels.classes)}")
    classes = labels.class_indices(store)
    rows = Selection((split,)).rows(store, classes)
    if not len(rows):
        raise ValueError(f"split {split!r}: no clips in store {store.path} "
                         f"(it has: {', '.join(sorted(set(store.column('split'))))})")
    d = trial.data
    data = load_split(store, rows, "test", classes, d.length, d.token, d.token_grid, frame_limit(trial.model),
                      what=f"split {split!r}")
    model = create_model(trial.model, int(blob["token_dim"]), len(labels.classes))
    model.load_state_dict(blob["state_dict"])
    ev = evaluate(model, data, len(labels.classes))
    return Prediction(data.clip_ids, ev.predictions, list(labels.classes))
