"""Tokens by name: the flow token reads the store's flow ROI features at the sampled frames;
a store without them is refused with the reason."""

import numpy as np
import pytest

from storage.sampling import uniform_indices
from storage.store import Clip, FrameStore, StoreWriter
from trainables.data import load_split


def _train(store, length, token):
    rows = store.indices("train")
    return load_split(store, rows, "train", store.column("label_index").astype(np.int64), length, token, 16, 256)


def test_flow_token_is_the_stored_features_at_the_sampled_frames(tiny_store):
    store = FrameStore(tiny_store)
    four = _train(store, 4, "flow_roi")
    rows = store.indices("train")
    assert four.tokens.shape == (len(rows), 4, 36) and bool(four.mask.all())
    for k, i in enumerate(rows[:5]):
        want = store.features(int(i), "flow_roi")[uniform_indices(store.frame_count(int(i)), 4)]
        assert np.array_equal(four.tokens[k].numpy(), want.reshape(4, 36))
    assert float(four.tokens[:, 0].abs().max()) < 1e-3  # the onset's flow to itself
    assert float(four.tokens[:, 1:].abs().max()) > 0.05  # later frames moved


def test_flow_token_needs_flow_features(tmp_path):
    with StoreWriter(tmp_path / "s", labels=["a"], frame_shape=(8, 8)) as w:
        w.add(Clip("c", "t", "s", "train", "a", 100.0, np.zeros((5, 8, 8), np.uint8)))
    with pytest.raises(ValueError, match="'flow_roi' needs the store's flow features"):
        _train(FrameStore(tmp_path / "s"), None, "flow_roi")
