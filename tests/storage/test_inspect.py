import json

import numpy as np
import pyarrow as pa
import pytest

from storage.inspect import UNLABELLED_CLASS, FrameLengths, Status, summarize, verify
from storage.store import CLIPS_FILE, FRAMES_FILE, Clip, FrameStore, StoreWriter

LABELS = ("a", "b", "c")
CHECKS = ["open", "offsets", "labels", "annotations", "fingerprint"]
# clip_id, dataset, subject, split, label, source fps, source frames  -> stored frames (at 100 fps)
TOY = [
    ("c0", "dfme", "s1", "train", "a", 200.0, 40),  # 20
    ("c1", "dfme", "s1", "train", "b", 300.0, 60),  # 20
    ("c2", "dfme", "s2", "train", "a", 500.0, 50),  # 10
    ("c3", "casme", "s3", "test", None, 30.0, 12),  # 12 (30 fps is kept as it is)
    ("c4", "dfme", "s3", "test", "b", 500.0, 130),  # 26
]
STORED_FRAMES = {"c0": 20, "c1": 20, "c2": 10, "c3": 12, "c4": 26}


def write_toy_store(path, **kw):
    with StoreWriter(path, labels=LABELS, frame_shape=(8, 6), metadata={"source": "unit test"}, **kw) as w:
        for i, (clip_id, dataset, subject, split, label, fps, n) in enumerate(TOY):
            frames = np.random.default_rng(i).integers(0, 256, size=(n, 8, 6), dtype=np.uint8)
            w.add(Clip(clip_id, dataset, subject, split, label, fps, frames, onset=0, apex=n // 2, offset=n - 1))
    return path


def rewrite_clips(path, clip_id: str, column: str, value) -> None:
    """Set one cell of clips.arrow, keeping the schema and its metadata (fingerprint included)."""
    t = pa.ipc.open_file(str(path / CLIPS_FILE)).read_all()
    row = t.column("clip_id").to_pylist().index(clip_id)
    field = t.schema.field(column)
    values = t.column(column).to_pylist()
    values[row] = value
    t = t.set_column(t.schema.get_field_index(column), field, pa.array(values, field.type))
    assert b"orch.fingerprint" in t.schema.metadata
    with pa.OSFile(str(path / CLIPS_FILE), "wb") as sink, pa.ipc.new_file(sink, t.schema) as w:
        w.write_table(t)


def flip_frame_byte(path, clip_id: str) -> None:
    """Flip one byte of the frame data of ``clip_id`` in frames.arrow."""
    store = FrameStore(path)
    needle = store.frames(store.clips.column("clip_id").to_pylist().index(clip_id))[3].tobytes()
    del store
    data = bytearray((path / FRAMES_FILE).read_bytes())
    pos = bytes(data).find(needle)
    assert pos > 0
    data[pos] ^= 0xFF
    (path / FRAMES_FILE).write_bytes(bytes(data))


def _statuses(result) -> dict[str, Status]:
    return {c.name: c.status for c in result.checks}


def test_summary_counts_what_was_written(tmp_path):
    path = write_toy_store(tmp_path / "s")
    s = summarize(path)
    assert s.fingerprint == FrameStore(path).fingerprint
    assert (s.n_clips, s.n_frames, s.frame_shape, s.labels) == (5, 88, (8, 6), list(LABELS))
    assert s.splits == {"train": 3, "test": 2}
    assert s.classes == {"a": 2, "b": 2, "c": 0, UNLABELLED_CLASS: 1}
    assert s.split_classes == {"train": {"a": 2, "b": 1, "c": 0, UNLABELLED_CLASS: 0},
                               "test": {"a": 0, "b": 1, "c": 0, UNLABELLED_CLASS: 1}}
    assert s.subjects == {"s1": {"train": 2}, "s2": {"train": 1}, "s3": {"test": 2}}
    assert s.datasets == {"casme": 1, "dfme": 4}
    assert s.source_fps == {30.0: 1, 200.0: 1, 300.0: 1, 500.0: 2}
    assert s.fps == {30.0: 1, 100.0: 4}
    # stored lengths 10, 12, 20, 20, 26
    assert s.lengths == FrameLengths(min=10, p10=pytest.approx(10.8), median=20.0, mean=pytest.approx(17.6),
                                     p90=pytest.approx(23.6), max=26)
    assert s.size_bytes == (path / CLIPS_FILE).stat().st_size + (path / FRAMES_FILE).stat().st_size
    assert s.size_bytes > 88 * 8 * 6
    assert s.user_metadata == {"source": "unit test"}


def test_summary_as_json(tmp_path):
    d = json.loads(json.dumps(summarize(write_toy_store(tmp_path / "s")).to_dict()))
    assert d["source_fps"] == {"30": 1, "200": 1, "300": 1, "500": 2}
    assert d["fps"] == {"30": 1, "100": 4}
    assert d["lengths"]["max"] == 26 and d["frame_shape"] == [8, 6]
    assert d["classes"][UNLABELLED_CLASS] == 1


def test_summary_of_a_store_without_clips(tmp_path):
    with StoreWriter(tmp_path / "s", labels=LABELS, frame_shape=(8, 6)):
        pass
    s = summarize(tmp_path / "s")
    assert (s.n_clips, s.n_frames, s.lengths, s.splits, s.classes) == (0, 0, None, {}, dict.fromkeys(LABELS, 0))
    assert verify(tmp_path / "s").ok


def test_an_intact_store_passes_every_check(tmp_path):
    result = verify(write_toy_store(tmp_path / "s"))
    assert [c.name for c in result.checks] == CHECKS
    assert result.ok, result.checks
    assert "1 unlabelled" in result.check("labels").message


def test_a_flipped_frame_byte_fails_only_the_fingerprint(tmp_path):
    path = write_toy_store(tmp_path / "s")
    flip_frame_byte(path, "c2")
    result = verify(path)
    assert _statuses(result) == {**dict.fromkeys(CHECKS, Status.PASSED), "fingerprint": Status.FAILED}
    assert "fingerprint" in result.check("fingerprint").message
    assert not result.ok


def test_a_wrong_frame_offset_is_named_and_the_fingerprint_skipped(tmp_path):
    path = write_toy_store(tmp_path / "s")
    rewrite_clips(path, "c2", "frame_offset", 39)  # c0 + c1 hold 40 frames
    result = verify(path)
    assert _statuses(result) == {"open": Status.PASSED, "offsets": Status.FAILED, "labels": Status.PASSED,
                                 "annotations": Status.PASSED, "fingerprint": Status.SKIPPED}
    msg = result.check("offsets").message
    assert "'c2'" in msg and "frame_offset 39, expected 40" in msg and CLIPS_FILE in msg
    assert "offsets" in result.check("fingerprint").message


@pytest.mark.parametrize("clip_id,column,value,check,expected", [
    ("c4", "frame_count", 27, "offsets", "clips count 89 frames"),
    ("c1", "label_index", 0, "labels", "clip 'c1': label_index 0 but label 'b' is 1"),
    ("c3", "label_index", 2, "labels", "clip 'c3': label_index 2 but no label"),
    ("c0", "label_index", -1, "labels", "clip 'c0': label_index -1 but label 'a' is 0"),
    ("c4", "label", "zebra", "labels", "clip 'c4': label 'zebra' is not in the vocabulary"),
    ("c2", "apex", 10, "annotations", "clip 'c2': apex 10 outside its frames [0, 10)"),
    ("c3", "onset", -1, "annotations", "clip 'c3': onset -1 outside"),
])
def test_a_corrupted_clip_row_fails_its_check_naming_the_clip(tmp_path, clip_id, column, value, check, expected):
    path = write_toy_store(tmp_path / "s")
    rewrite_clips(path, clip_id, column, value)
    result = verify(path)
    statuses = _statuses(result)
    assert statuses[check] is Status.FAILED
    assert expected in result.check(check).message
    assert [name for name, s in statuses.items() if s is Status.PASSED] == \
        [name for name in CHECKS if name not in (check, "fingerprint")]


def test_an_empty_clip_fails_offsets_and_its_annotations(tmp_path):
    path = write_toy_store(tmp_path / "s")
    rewrite_clips(path, "c1", "frame_count", 0)
    result = verify(path)
    assert "clip 'c1': frame_count 0 (must be positive)" in result.check("offsets").message
    assert "clip 'c1': onset 0 outside its frames [0, 0)" in result.check("annotations").message


def test_a_clip_across_two_record_batches_fails_offsets(tmp_path, monkeypatch):
    monkeypatch.setattr("storage.store._FLUSH_BYTES", 1)  # one record batch per clip
    path = write_toy_store(tmp_path / "s")
    rewrite_clips(path, "c0", "frame_count", 22)  # c0 now reaches 2 frames into c1's batch
    rewrite_clips(path, "c1", "frame_offset", 22)
    rewrite_clips(path, "c1", "frame_count", 18)
    result = verify(path)
    assert result.check("offsets").status is Status.FAILED
    assert "clip 'c0': frames span two record batches" in result.check("offsets").message


def test_a_missing_clips_file_fails_open_and_skips_the_rest(tmp_path):
    path = write_toy_store(tmp_path / "s")
    (path / CLIPS_FILE).unlink()
    result = verify(path)
    assert _statuses(result) == {"open": Status.FAILED, **dict.fromkeys(CHECKS[1:], Status.SKIPPED)}
    assert str(path / CLIPS_FILE) in result.check("open").message
    assert all(c.message.startswith("not run: open") for c in result.checks[1:])


def test_wrong_format_version_and_column_type_fail_open(tmp_path):
    path = write_toy_store(tmp_path / "s")
    t = pa.ipc.open_file(str(path / CLIPS_FILE)).read_all()
    t = t.replace_schema_metadata({**t.schema.metadata, b"orch.format_version": b"9"})
    with pa.OSFile(str(path / CLIPS_FILE), "wb") as sink, pa.ipc.new_file(sink, t.schema) as w:
        w.write_table(t)
    assert "format version '9'" in verify(path).check("open").message

    t = t.replace_schema_metadata({**t.schema.metadata, b"orch.format_version": b"1"})
    t = t.set_column(t.schema.get_field_index("frame_offset"), pa.field("frame_offset", pa.int32()),
                     t.column("frame_offset").cast(pa.int32()))
    with pa.OSFile(str(path / CLIPS_FILE), "wb") as sink, pa.ipc.new_file(sink, t.schema) as w:
        w.write_table(t)
    msg = verify(path).check("open").message
    assert "column 'frame_offset' is int32, expected int64" in msg
