from collections import Counter

import pytest

import numpy as np

from storage.sources.synthetic import DFME_CLASSES, SyntheticSpec, benchmark_spec, ensure_store, generate
from storage.sources.synthetic.benchmark import _deformation, plan
from storage.sources.synthetic.expressions import EXPRESSIONS, envelope, motion_span, twitch
from storage.store import FrameStore
from tests.conftest import TINY

QUICK = SyntheticSpec(**{**TINY.__dict__, "camera": 0})  # face crops rendered directly: fast to generate


def test_same_spec_same_clips_other_seed_other_clips():
    a, b = list(generate(QUICK)), list(generate(QUICK))
    assert [c.clip_id for c in a] == [c.clip_id for c in b]
    assert all(np.array_equal(x.frames, y.frames) and x.label == y.label for x, y in zip(a, b))
    other = list(generate(SyntheticSpec(**{**QUICK.__dict__, "seed": 8})))
    assert not np.array_equal(a[0].frames, other[0].frames)


def test_splits_are_subject_disjoint_and_hold_every_class():
    clips = list(generate(QUICK))
    by_split = {}
    for c in clips:
        by_split.setdefault(c.split, set()).add(c.subject)
    assert set(by_split) == {"train", "test_A", "test_B"}
    assert not (by_split["train"] & by_split["test_A"]) and not (by_split["train"] & by_split["test_B"])
    assert not (by_split["test_A"] & by_split["test_B"])
    for split in by_split:
        assert {c.label for c in clips if c.split == split} == set(DFME_CLASSES)


def test_default_benchmark_is_imbalanced_at_dfme_like_lengths():
    spec = SyntheticSpec()
    assert spec.n_clips == 34 * 9
    counts = Counter(c.label for c in plan(spec))
    assert max(counts.values()) >= 2 * min(counts.values())
    assert set(spec.fps_choices) == {200, 300, 500}
    assert spec.duration_s == (0.32, 0.64)  # 32-64 frames at 100 fps


def test_dfme_size_preset_has_dfme_split_sizes_disjoint_subjects_and_imbalance():
    spec = benchmark_spec("dfme-size")
    clips = plan(spec)
    assert len(clips) == spec.n_clips == 2629
    assert Counter(c.split for c in clips) == {"train": 1856, "test_A": 474, "test_B": 299}
    subjects = {split: {c.subject for c in clips if c.split == split} for split in ("train", "test_A", "test_B")}
    assert sum(map(len, subjects.values())) == len(set().union(*subjects.values())) == 259
    counts = Counter(c.label for c in clips)
    assert set(counts) == set(DFME_CLASSES)
    assert counts.most_common(1)[0][0] == "disgust" and min(counts, key=counts.get) == "contempt"
    assert max(counts.values()) >= 4 * min(counts.values())
    with pytest.raises(ValueError, match="unknown 'dfme'"):
        benchmark_spec("dfme")


def test_displacements_are_micro():
    """Unit fields peak at exactly 1, so a clip moves at most amplitude_px x expressivity
    (<= 1.2) stored pixels: sub-pixel to ~2 px."""
    for name in EXPRESSIONS:
        unit = _deformation(name, 96, SyntheticSpec().sigma)
        peak = float(np.linalg.norm(unit, axis=-1).max())
        assert peak == pytest.approx(1.0), name
    lo, hi = SyntheticSpec().amplitude_px
    assert lo < 1.0 and hi * 1.2 <= 2.5


def test_motion_is_local():
    """Apex minus onset changes pixels near the expression's points only."""
    spec = SyntheticSpec(seed=3, size=48, drift_px=0.0, noise=0.0, camera=0,
                         subjects={"train": 1, "test_A": 0, "test_B": 0}, clips_per_subject=7)
    for clip in generate(spec):
        f = clip.frames.astype(np.float32)
        diff = np.abs(f[clip.apex] - f[0])
        assert (diff > 8).mean() < 0.2, clip.label  # a small part of the face
        rows = np.flatnonzero(diff.max(axis=1) > 8)
        assert len(rows) > 0, clip.label
        moved = {m.point.split("_")[0] for m in EXPRESSIONS[clip.label].movements}
        top = rows.min() / spec.size
        if moved <= {"mouth", "lip"}:
            assert top > 0.45, (clip.label, top)  # only the lower face moved
        if moved <= {"brow", "lid"}:
            assert rows.max() / spec.size < 0.5, clip.label  # only the upper face moved


def _peaks(e):
    return int(np.sum((e[1:-1] > e[:-2]) & (e[1:-1] >= e[2:]) & (e[1:-1] > 0.3)))


def test_fear_and_surprise_differ_only_in_dynamics():
    assert EXPRESSIONS["fear"].movements == EXPRESSIONS["surprise"].movements
    assert EXPRESSIONS["happiness"].movements == EXPRESSIONS["contempt"].movements
    t = np.arange(0, 0.8, 0.001)  # seconds, finely
    for k in range(10):
        rng = np.random.default_rng(k)
        span = motion_span(0.8, rng)
        assert _peaks(envelope("double", t, rng, span)) == 2
        assert _peaks(envelope("single", t, rng, span)) == 1
        short = envelope("short", t, rng, span)
        assert _peaks(short) == 1 and np.count_nonzero(short) * 0.001 <= 0.09  # one pulse of at most 90 ms


def test_the_contempt_twitch_is_seen_by_all_frames_and_often_missed_by_16():
    """Temporal by construction: at 100 fps a 32-64 frame clip always shows the twitch in
    some frame, while 16 evenly spaced frames step over it in a good share of clips, and
    fewer frames miss it more often."""
    from storage.sampling import uniform_indices

    missed = {4: 0, 8: 0, 12: 0, 16: 0}
    n_clips = 400
    for k in range(n_clips):
        rng = np.random.default_rng(k)
        n = int(rng.integers(32, 65))
        t = np.arange(n) / 100.0
        brief = twitch(t, rng, motion_span(t[-1], rng))
        assert brief.max() > 0.5  # every frame: the twitch is always seen
        assert np.count_nonzero(brief) <= 5  # brief: at most 5 frames at 100 fps
        for length in missed:
            missed[length] += brief[uniform_indices(n, length)].max() < 0.25
    rates = [missed[length] / n_clips for length in (4, 8, 12, 16)]
    # measured: 87 % / 62 % / 40 % / 25 % of clips for N = 4 / 8 / 12 / 16
    assert rates == sorted(rates, reverse=True) and rates[-1] > 0.2, rates


def test_ensure_store_builds_once_with_flow_features(tmp_path):
    spec = SyntheticSpec(**{**TINY.__dict__, "subjects": {"train": 1, "test_A": 1, "test_B": 1}})
    path, built = ensure_store(spec, tmp_path)
    assert built and FrameStore(path).labels == list(DFME_CLASSES)
    assert FrameStore(path).feature_shapes == {"flow_roi": (18, 2)} and FrameStore(path).frame_shape == (16, 16)
    again, built_again = ensure_store(spec, tmp_path)
    assert again == path and not built_again
    store = FrameStore(path)
    assert set(store.column("fps")) == {100.0}  # 200/300/500 fps normalised
    assert store.metadata["orch.user.synthetic_spec"]


def test_casme3_like_30fps_clips_are_stored_at_their_own_rate(tmp_path):
    from storage.sources.synthetic import write_store

    spec = SyntheticSpec(**{**QUICK.__dict__, "fps_choices": (30,), "duration_s": (0.3, 0.4),
                            "subjects": {"train": 1, "test_A": 1, "test_B": 1}})
    clips = list(generate(spec))
    store = FrameStore(write_store(spec, tmp_path / "s"))
    assert set(store.column("fps")) == {30.0}
    assert [store.frame_count(i) for i in range(len(store))] == [len(c.frames) for c in clips]
    assert all(9 <= len(c.frames) <= 12 for c in clips)
