import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pyarrow as pa
import pytest

from storage.store import CLIPS_FILE, FRAMES_FILE, UNLABELLED, Clip, FrameStore, StoreError, StoreWriter

LABELS = ("a", "b", "c")


def _clip(i: int, n: int = 12, fps: float = 30.0, label: str | None = "a", split: str = "train", shape=(8, 6)):
    rng = np.random.default_rng(i)
    frames = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    return Clip(f"c{i}", "test", f"s{i % 3}", split, label, fps, frames, onset=0, apex=n // 2, offset=n - 1)


def _write(path, clips, **kw):
    with StoreWriter(path, labels=LABELS, frame_shape=clips[0].frames.shape[1:], **kw) as w:
        for c in clips:
            w.add(c)
    return path


def test_round_trip_with_resampling_to_100fps(tmp_path):
    clips = [_clip(0, 12, 30.0), _clip(1, 40, 200.0, "b", "test_A"), _clip(2, 50, 500.0, None, "test_B")]
    store = FrameStore(_write(tmp_path / "s", clips))
    assert len(store) == 3 and store.labels == list(LABELS) and store.frame_shape == (8, 6)
    assert np.array_equal(store.frames(0), clips[0].frames)  # 30 fps: untouched
    assert np.array_equal(store.frames(1), clips[1].frames[::2])  # 200 fps: every 2nd
    assert np.array_equal(store.frames(2), clips[2].frames[::5])  # 500 fps: every 5th
    rows = store.clips.to_pylist()
    assert [r["fps"] for r in rows] == [30.0, 100.0, 100.0]
    assert [r["source_fps"] for r in rows] == [30.0, 200.0, 500.0]
    assert [r["frame_count"] for r in rows] == [12, 20, 10]
    assert [r["label_index"] for r in rows] == [0, 1, UNLABELLED]
    assert rows[2]["label"] is None
    assert (rows[1]["onset"], rows[1]["apex"], rows[1]["offset"]) == (0, 10, 19)
    assert list(store.indices("test_A")) == [1]


def test_frames_are_zero_copy_views_of_the_mapped_file(tmp_path):
    store = FrameStore(_write(tmp_path / "s", [_clip(i, 30, shape=(64, 64)) for i in range(5)]))
    before = pa.total_allocated_bytes()
    tracemalloc.start()
    view = store.frames(3)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert view.shape == (30, 64, 64)
    assert not view.flags.owndata and not view.flags.writeable
    assert pa.total_allocated_bytes() == before  # nothing allocated by Arrow
    assert peak < view.nbytes / 10  # and no frame bytes by numpy
    assert np.shares_memory(view, store.frames(3))
    assert np.array_equal(view, _clip(3, 30, shape=(64, 64)).frames)


def test_sample_copies_only_the_sampled_frames(tmp_path):
    clip = _clip(0, 30, shape=(128, 128))
    store = FrameStore(_write(tmp_path / "s", [clip]))
    tracemalloc.start()
    four = store.sample(0, 4)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert four.flags.owndata and four.shape == (4, 128, 128)
    assert peak < 1.5 * four.nbytes  # 4 frames, not 30
    assert np.array_equal(four, clip.frames[[0, 10, 19, 29]])
    assert store.sample(0, None).shape[0] == 30


def test_fingerprint_depends_on_content_only(tmp_path, monkeypatch):
    clips = [_clip(i, 20) for i in range(6)]
    a = FrameStore(_write(tmp_path / "a", clips))
    monkeypatch.setattr("storage.store._FLUSH_BYTES", 500)  # other record batch boundaries
    b = FrameStore(_write(tmp_path / "b", clips))
    assert len(b._chunks) > 1  # really laid out differently
    assert a.fingerprint == b.fingerprint
    changed = [*clips[:-1], _clip(99, 20)]
    c = FrameStore(_write(tmp_path / "c", changed))
    assert c.fingerprint != a.fingerprint
    relabelled = [*clips[:-1], Clip(**{**clips[-1].__dict__, "label": "c"})]
    assert FrameStore(_write(tmp_path / "d", relabelled)).fingerprint != a.fingerprint
    a.verify()
    b.verify()
    for i in range(len(clips)):
        assert np.array_equal(a.frames(i), b.frames(i))


def test_verify_detects_a_changed_frame_byte(tmp_path):
    path = _write(tmp_path / "s", [_clip(i, 20) for i in range(3)])
    FrameStore(path).verify()
    data = bytearray((path / FRAMES_FILE).read_bytes())
    # flip one byte of frame data (the frames of clip 1 are somewhere in the middle)
    store = FrameStore(path)
    needle = store.frames(1)[5].tobytes()
    pos = bytes(data).find(needle)
    assert pos > 0
    data[pos] ^= 0xFF
    del store
    (path / FRAMES_FILE).write_bytes(bytes(data))
    with pytest.raises(StoreError, match="fingerprint"):
        FrameStore(path).verify()


def test_exception_while_writing_leaves_nothing(tmp_path):
    target = tmp_path / "s"
    with pytest.raises(RuntimeError):
        with StoreWriter(target, labels=LABELS, frame_shape=(8, 6)) as w:
            w.add(_clip(0))
            raise RuntimeError("crash")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_killed_writer_never_leaves_a_store_that_opens(tmp_path):
    """A process killed mid-write (no cleanup at all) leaves no store at the target."""
    target = tmp_path / "s"
    code = textwrap.dedent(f"""
        import os, numpy as np
        from storage.store import Clip, StoreWriter
        with StoreWriter({str(target)!r}, labels=["a"], frame_shape=(64, 64)) as w:
            for i in range(50):
                w.add(Clip(f"c{{i}}", "t", "s", "train", "a", 30.0, np.zeros((20, 64, 64), np.uint8)))
                if i == 25:
                    os._exit(9)
    """)
    r = subprocess.run([sys.executable, "-c", code])
    assert r.returncode == 9
    assert not target.exists()
    with pytest.raises(StoreError, match="missing"):
        FrameStore(target)


def test_failed_overwrite_keeps_the_old_store(tmp_path):
    path = _write(tmp_path / "s", [_clip(0)])
    old = FrameStore(path).fingerprint
    with pytest.raises(RuntimeError):
        with StoreWriter(path, labels=LABELS, frame_shape=(8, 6), overwrite=True) as w:
            w.add(_clip(1))
            raise RuntimeError("crash")
    assert FrameStore(path).fingerprint == old
    _write(path, [_clip(1)], overwrite=True)
    assert FrameStore(path).fingerprint != old


@pytest.mark.parametrize("bad,match", [
    (dict(frames=np.zeros((3, 8, 6), np.float32)), "uint8"),
    (dict(frames=np.zeros((3, 9, 6), np.uint8)), "frame shape"),
    (dict(frames=np.zeros((0, 8, 6), np.uint8)), "no frames"),
    (dict(label="zebra"), "label 'zebra'"),
    (dict(apex=99), "annotated frame 99"),
])
def test_bad_clips_are_refused_naming_the_clip(tmp_path, bad, match):
    clip = Clip(**{**_clip(5).__dict__, **bad})
    with pytest.raises(StoreError, match=match) as e:
        with StoreWriter(tmp_path / "s", labels=LABELS, frame_shape=(8, 6)) as w:
            w.add(clip)
    assert "c5" in str(e.value)
    assert not (tmp_path / "s").exists()


def test_failure_while_finishing_cleans_up(tmp_path, monkeypatch):
    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("storage.store._fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        _write(tmp_path / "s", [_clip(0)])
    assert list(tmp_path.iterdir()) == []


def test_store_appearing_meanwhile_is_not_replaced(tmp_path):
    """Without overwrite, a store another process wrote after we started is kept."""
    target = tmp_path / "s"
    w = StoreWriter(target, labels=LABELS, frame_shape=(8, 6))
    _write(target, [_clip(1)])  # the other process
    theirs = FrameStore(target).fingerprint
    with pytest.raises(StoreError, match="cannot move the new store into place"):
        with w:
            w.add(_clip(0))
    assert FrameStore(target).fingerprint == theirs
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_failed_commit_of_an_overwrite_puts_the_old_store_back(tmp_path, monkeypatch):
    path = _write(tmp_path / "s", [_clip(0)])
    old = FrameStore(path).fingerprint
    real = __import__("os").rename
    calls = {"n": 0}

    def rename(src, dst):
        calls["n"] += 1
        if calls["n"] == 2:  # moving the new store in
            raise OSError("injected")
        return real(src, dst)

    monkeypatch.setattr("storage.store.os.rename", rename)
    with pytest.raises(StoreError, match="injected"):
        _write(path, [_clip(1)], overwrite=True)
    monkeypatch.undo()
    assert FrameStore(path).fingerprint == old
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_missing_metadata_is_named(tmp_path):
    path = _write(tmp_path / "s", [_clip(0)])
    t = pa.ipc.open_file(str(path / CLIPS_FILE)).read_all()
    meta = {k: v for k, v in t.schema.metadata.items() if k != b"orch.labels"}
    with pa.OSFile(str(path / CLIPS_FILE), "wb") as sink, pa.ipc.new_file(sink, t.schema.with_metadata(meta)) as w:
        w.write_table(t.replace_schema_metadata(meta))
    with pytest.raises(StoreError, match="missing orch.labels"):
        FrameStore(path)


def test_clip_outside_its_record_batch_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("storage.store._FLUSH_BYTES", 1)  # one batch per clip
    path = _write(tmp_path / "s", [_clip(0, 10), _clip(1, 10)])
    t = pa.ipc.open_file(str(path / CLIPS_FILE)).read_all()
    counts = pa.array([12, 8], pa.int32())  # clip c0 now reaches into c1's batch
    t2 = t.set_column(t.schema.get_field_index("frame_count"), t.schema.field("frame_count"), counts)
    with pa.OSFile(str(path / CLIPS_FILE), "wb") as sink, pa.ipc.new_file(sink, t2.schema) as w:
        w.write_table(t2)
    with pytest.raises(StoreError, match="clip 'c0'.*outside one record batch"):
        FrameStore(path)


def test_existing_store_is_not_overwritten_by_default(tmp_path):
    path = _write(tmp_path / "s", [_clip(0)])
    with pytest.raises(StoreError, match="already exists"):
        StoreWriter(path, labels=LABELS, frame_shape=(8, 6))


def test_not_a_store(tmp_path):
    (tmp_path / CLIPS_FILE).write_text("nope")
    (tmp_path / FRAMES_FILE).write_text("nope")
    with pytest.raises(StoreError, match="not a readable Arrow store"):
        FrameStore(tmp_path)


def _with_features(clip: Clip, seed: int) -> Clip:
    rng = np.random.default_rng(100 + seed)
    clip.features = {"flow_roi": rng.normal(size=(len(clip.frames), 18, 2)).astype(np.float32)}
    return clip


def test_per_frame_features_are_resampled_aligned_and_zero_copy(tmp_path, monkeypatch):
    import storage.store as store_mod

    monkeypatch.setattr(store_mod, "_FLUSH_BYTES", 3000)  # several record batches
    clips = [_with_features(_clip(i, 12 + 10 * i, fps), i) for i, fps in enumerate((30.0, 200.0, 500.0, 30.0))]
    store = FrameStore(_write(tmp_path / "s", clips, features={"flow_roi": (18, 2)}))
    assert store.feature_shapes == {"flow_roi": (18, 2)} and len(store._chunk_starts) > 1
    for i, (c, step) in enumerate(zip(clips, (1, 2, 5, 1))):
        f = store.features(i, "flow_roi")
        assert f.dtype == np.float32 and np.array_equal(f, c.features["flow_roi"][::step])
        assert not f.flags.writeable and not f.flags.owndata  # a view into the mapped file
    store.verify()
    plain = FrameStore(_write(tmp_path / "p", [_clip(i, 12 + 10 * i, fps) for i, fps in
                                               enumerate((30.0, 200.0, 500.0, 30.0))]))
    assert plain.fingerprint != store.fingerprint  # the features are part of the content
    with pytest.raises(KeyError, match="no feature 'flow_roi'"):
        plain.features(0, "flow_roi")


def test_features_missing_or_misshapen_are_refused(tmp_path):
    with pytest.raises(StoreError, match=r"features \[\] != the store's \['flow_roi'\]"):
        _write(tmp_path / "a", [_clip(0)], features={"flow_roi": (18, 2)})
    bad = _clip(1)
    bad.features = {"flow_roi": np.zeros((5, 18, 2), np.float32)}
    with pytest.raises(StoreError, match="feature 'flow_roi' has shape"):
        _write(tmp_path / "b", [bad], features={"flow_roi": (18, 2)})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_changed_feature_value_fails_verify(tmp_path):
    path = _write(tmp_path / "s", [_with_features(_clip(0), 0)], features={"flow_roi": (18, 2)})
    data = bytearray((path / "features.arrow").read_bytes())
    target = np.float32(FrameStore(path).features(0, "flow_roi")[3, 4, 1]).tobytes()
    at = bytes(data).index(target)
    data[at] ^= 0xFF
    (path / "features.arrow").write_bytes(bytes(data))
    with pytest.raises(StoreError, match="content fingerprint"):
        FrameStore(path).verify()
