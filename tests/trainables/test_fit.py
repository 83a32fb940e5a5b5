import dataclasses
import io

import numpy as np
import pytest
import torch

from storage.store import FrameStore
from trainables.config import DataConfig, TrainConfig, TrialConfig
from trainables.data import load_split
from trainables.fit import FitState, Fitter, evaluate, learning_rate
from trainables.model import ModelConfig, create_model

SMALL = ModelConfig(depth=2, heads=2, dim_head=16)


def _data(store, length):
    return [load_split(store, s, length, "pixel_diff", 8, 256) for s in ("train", "test_A", "test_B")]


def _fit(store, seed, epochs=4, length=4, stop_after=None, state=None):
    torch.set_num_threads(1)
    train, val, test = _data(store, length)
    torch.manual_seed(seed)
    model = create_model(SMALL, train.token_dim, len(store.labels))
    fitter = Fitter(model, TrainConfig(epochs=epochs), seed, len(store.labels), train, val, state)
    logs = []
    for log in fitter.epochs():
        logs.append(log)
        if stop_after and log.epoch == stop_after:
            break
    return fitter, logs, test


def test_same_seed_same_metrics_other_seed_other_metrics(tiny_store):
    store = FrameStore(tiny_store)
    f1, logs1, test = _fit(store, seed=3)
    f2, logs2, _ = _fit(store, seed=3)
    assert [l.train_loss for l in logs1] == [l.train_loss for l in logs2]
    assert [l.val for l in logs1] == [l.val for l in logs2]
    e1 = evaluate(f1.selected_model(), test, 7)
    e2 = evaluate(f2.selected_model(), test, 7)
    assert e1.scores == e2.scores and np.array_equal(e1.predictions, e2.predictions)
    _, logs3, _ = _fit(store, seed=4)
    assert [l.train_loss for l in logs3] != [l.train_loss for l in logs1]


def test_resuming_from_a_checkpoint_continues_exactly(tiny_store):
    store = FrameStore(tiny_store)
    full, full_logs, test = _fit(store, seed=1, epochs=4)
    half, _, _ = _fit(store, seed=1, epochs=4, stop_after=2)
    # through a real save/load, as a checkpoint does
    buf = io.BytesIO()
    torch.save({f.name: getattr(half.state, f.name) for f in dataclasses.fields(FitState)}, buf)
    buf.seek(0)
    state = FitState(**torch.load(buf, weights_only=False))
    resumed, resumed_logs, _ = _fit(store, seed=1, epochs=4, state=state)
    assert [l.epoch for l in resumed_logs] == [3, 4]
    assert [l.train_loss for l in resumed_logs] == [l.train_loss for l in full_logs[2:]]
    assert resumed.state.best_epoch == full.state.best_epoch
    a = evaluate(resumed.selected_model(), test, 7).scores
    b = evaluate(full.selected_model(), test, 7).scores
    assert a == b


def test_selected_epoch_is_the_best_validation_epoch(tiny_store):
    store = FrameStore(tiny_store)
    fitter, logs, _ = _fit(store, seed=0, epochs=6)
    vals = [l.val.uf1 for l in logs]
    assert fitter.state.best_epoch == int(np.argmax(vals)) + 1  # earliest best
    assert fitter.state.best_val_uf1 == max(vals)
    train, val, _ = _data(store, 4)
    assert evaluate(fitter.selected_model(), val, 7).scores.uf1 == pytest.approx(max(vals))


def test_fitter_never_sees_the_test_split():
    """Selection is structural: the Fitter is given train and validation data only."""
    import inspect

    params = inspect.signature(Fitter.__init__).parameters
    assert "test" not in params and {"train", "val"} <= set(params)


def test_learning_rate_decreases_from_the_papers_initial_value():
    cfg = TrainConfig(epochs=10)
    lrs = [learning_rate(cfg, e) for e in range(1, 11)]
    assert lrs[0] == 0.005
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] == pytest.approx(0.005 * cfg.lr_final_ratio)


def test_all_frames_pads_and_masks_clips_of_different_lengths(tiny_store):
    store = FrameStore(tiny_store)
    train = load_split(store, "train", None, "pixel_diff", 8, 256)
    counts = [store.frame_count(i) for i in store.indices("train")]
    assert train.tokens.shape[1] == max(counts) and len(set(counts)) > 1
    assert train.mask.sum(dim=1).tolist() == counts
    assert float(train.tokens[~train.mask].abs().sum()) == 0.0
    four = load_split(store, "train", 4, "pixel_diff", 8, 256)
    assert four.tokens.shape == (len(counts), 4, 64) and bool(four.mask.all())
    assert float(four.tokens[:, 0].abs().sum()) == 0.0  # difference of the onset to itself


def test_config_round_trip_and_field_errors():
    cfg = TrialConfig(seed=3, data=DataConfig(store="/x", length=8), train=TrainConfig(epochs=2))
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.params()["train.epochs"] == "2" and cfg.params()["data.length"] == "8"
    with pytest.raises(ValueError, match=r"train\.: unknown field\(s\) \['epoch'\]"):
        TrialConfig.from_dict({"train": {"epoch": 3}})
    assert cfg.digest(exclude=("seed",)) == dataclasses.replace(cfg, seed=9).digest(exclude=("seed",))
    assert cfg.digest() != dataclasses.replace(cfg, seed=9).digest()
