import dataclasses
import io

import numpy as np
import pytest
import torch

from storage.selection import Selection, label_map
from storage.store import FrameStore
from trainables.config import DataConfig, TrainConfig, TrialConfig
from trainables.data import load_split
from trainables.fit import FitState, Fitter, LeakageError, evaluate, learning_rate
from trainables.model import ModelConfig, create_model

SMALL = ModelConfig(depth=2, heads=2, dim_head=16, max_frames=256)


ROLE = {"train": "train", "test_A": "validation", "test_B": "test"}


def _split(store, split, length, role=None):
    classes = label_map("store", store).class_indices(store)
    rows = Selection((split,)).rows(store, classes)
    return load_split(store, rows, role or ROLE[split], classes, length, "pixel_diff", 8, 256)


def _data(store, length):
    return [_split(store, s, length) for s in ("train", "test_A", "test_B")]


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
    state = FitState(**torch.load(buf, weights_only=True))
    resumed, resumed_logs, _ = _fit(store, seed=1, epochs=4, state=state)
    assert [l.epoch for l in resumed_logs] == [3, 4]
    assert [l.train_loss for l in resumed_logs] == [l.train_loss for l in full_logs[2:]]
    assert resumed.state.best_epoch == full.state.best_epoch
    a = evaluate(resumed.selected_model(), test, 7).scores
    b = evaluate(full.selected_model(), test, 7).scores
    assert a == b


def test_the_last_epochs_checkpoint_holds_what_closing_the_run_needs(tiny_store):
    """The checkpoint of the last epoch (without the last weights and Adam's state): a trial
    resumed from it trains no epoch and tests the same selected parameters."""
    from trainables.trainable import checkpoint_content

    store = FrameStore(tiny_store)
    full, _, test = _fit(store, seed=1, epochs=3)
    sizes = {}
    for final in (False, True):
        buf = io.BytesIO()
        torch.save(checkpoint_content(full.state, final=final), buf)
        sizes[final] = buf.tell()
    assert sizes[True] < 0.3 * sizes[False]
    buf.seek(0)
    resumed, logs, _ = _fit(store, seed=1, epochs=3, state=FitState(**torch.load(buf, weights_only=True)))
    assert logs == [] and resumed.state.best_epoch == full.state.best_epoch
    a = evaluate(resumed.selected_model(), test, 7)
    b = evaluate(full.selected_model(), test, 7)
    assert a.scores == b.scores and np.array_equal(a.predictions, b.predictions)


def test_selected_epoch_is_the_best_validation_epoch(tiny_store):
    store = FrameStore(tiny_store)
    fitter, logs, _ = _fit(store, seed=0, epochs=6)
    vals = [l.val.uf1 for l in logs]
    assert fitter.state.best_epoch == int(np.argmax(vals)) + 1  # earliest best
    assert fitter.state.best_val_uf1 == max(vals)
    train, val, _ = _data(store, 4)
    assert evaluate(fitter.selected_model(), val, 7).scores.uf1 == pytest.approx(max(vals))


def test_fitter_never_sees_the_test_split(tiny_store):
    """Selection is structural: the Fitter takes train and validation data only, and refuses
    data whose role is test in either place."""
    import inspect

    params = inspect.signature(Fitter.__init__).parameters
    assert "test" not in params and {"train", "val"} <= set(params)
    store = FrameStore(tiny_store)
    train, val, test = _data(store, 4)
    model = create_model(SMALL, train.token_dim, 7)
    with pytest.raises(LeakageError, match="validation data given has role 'test'"):
        Fitter(model, TrainConfig(epochs=1), 0, 7, train, test)
    with pytest.raises(LeakageError, match="train data given has role 'test'"):
        Fitter(model, TrainConfig(epochs=1), 0, 7, test, val)
    Fitter(model, TrainConfig(epochs=1), 0, 7, train, val)  # the right roles are accepted


@pytest.mark.parametrize("build", ["solo", "pack"])
def test_what_trains_a_trial_never_sees_the_test_split(tiny_store, build):
    """``solo_fitter`` (a solo trial: a pack of one) and ``PackedFitter`` (a pack) refuse
    test data as training or validation data, for any member."""
    from trainables.packed_fit import PackedFitter, solo_fitter

    store = FrameStore(tiny_store)
    train, val, test = _data(store, 4)
    model = lambda: create_model(SMALL, train.token_dim, 7)  # noqa: E731
    if build == "solo":
        make = lambda t, v: solo_fitter(model(), TrainConfig(epochs=1), 0, 7, t, v)  # noqa: E731
    else:
        make = lambda t, v: PackedFitter([model(), model()], TrainConfig(epochs=1), [0, 1], 7,  # noqa: E731
                                         [train, t], [val, v])
    with pytest.raises(LeakageError, match="validation data given has role 'test'"):
        make(train, test)
    with pytest.raises(LeakageError, match="train data given has role 'test'"):
        make(test, val)
    make(train, val)  # the right roles are accepted


def test_learning_rate_decreases_from_the_papers_initial_value():
    cfg = TrainConfig(epochs=10)
    lrs = [learning_rate(cfg, e) for e in range(1, 11)]
    assert lrs[0] == 0.005
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] == pytest.approx(0.005 * cfg.lr_final_ratio)


def test_all_frames_pads_and_masks_clips_of_different_lengths(tiny_store):
    store = FrameStore(tiny_store)
    train = _split(store, "train", None)
    counts = [store.frame_count(i) for i in store.indices("train")]
    assert train.tokens.shape[1] == max(counts) and len(set(counts)) > 1
    assert train.mask.sum(dim=1).tolist() == counts
    assert float(train.tokens[~train.mask].abs().sum()) == 0.0
    four = _split(store, "train", 4)
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


def test_an_unlabelled_test_set_gives_predictions_only_and_training_needs_labels(tmp_path):
    from storage.store import Clip, StoreWriter

    with StoreWriter(tmp_path / "s", labels=["a", "b"], frame_shape=(8, 8)) as w:
        for k in range(4):
            w.add(Clip(f"t{k}", "t", f"s{k}", "train", "ab"[k % 2], 100.0, np.full((5, 8, 8), k, np.uint8)))
            w.add(Clip(f"u{k}", "t", f"x{k}", "test_B", None, 100.0, np.full((5, 8, 8), k, np.uint8)))
        w.add(Clip("v0", "t", "y", "mixed", "a", 100.0, np.zeros((5, 8, 8), np.uint8)))
        w.add(Clip("v1", "t", "y", "mixed", None, 100.0, np.zeros((5, 8, 8), np.uint8)))
    store = FrameStore(tmp_path / "s")
    test = _split(store, "test_B", 4, role="test")
    assert not test.labelled
    model = create_model(SMALL, test.token_dim, 2)
    ev = evaluate(model, test, 2)
    assert ev.scores is None and len(ev.predictions) == 4
    with pytest.raises(ValueError, match=r"4 of 4 clip\(s\) have no label .*'u0'.*training and validation need labels"):
        _split(store, "test_B", 4, role="validation")
    with pytest.raises(ValueError, match="labelled wholly or not at all"):
        _split(store, "mixed", 4, role="test")


def test_balanced_class_weights():
    from trainables.fit import class_weights

    w = class_weights("balanced", torch.tensor([0, 0, 0, 1]), 3)
    assert w.tolist() == pytest.approx([4 / (2 * 3), 4 / (2 * 1), 0.0])
    assert class_weights("none", torch.tensor([0, 1]), 2) is None
    with pytest.raises(ValueError, match="train.class_weight"):
        class_weights("inverse", torch.tensor([0]), 1)
