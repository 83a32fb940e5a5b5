"""DFME / CCAC2024 into the store: generated clips in the competition layout (frame folders,
one annotation sheet per split), ingested end to end with exact counts, and every kind of
bad input reported by reason while the rest is built."""

import json
import shutil

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from storage.ingest import IngestOptions, ingest, report_path
from storage.preprocess.temporal import resample_index, resample_indices
from storage.sources import dfme
from storage.sources.frames import ClipError, numbered_frames
from storage.sources.synthetic.layouts import small, write_dfme_layout
from storage.store import UNLABELLED, FrameStore

SPEC = small()  # 2 train subjects, 1 test_A, 1 test_B; 3 clips each


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return write_dfme_layout(tmp_path_factory.mktemp("dfme"), SPEC, sheet_suffix=".xlsx")


def test_the_layout_ingests_end_to_end(layout, tmp_path):
    out = tmp_path / "store"
    r = CliRunner().invoke(app, ["ingest", str(layout.root), "--format", "dfme", "--out", str(out),
                                 "--size", "32", "--workers", "2"])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())  # rich wraps long lines
    assert "train.xlsx: 6 rows; columns filename='Filename', subject='Subject', emotion='EmotionId'" in said
    assert "12 clips written, 0 skipped" in said
    store = FrameStore(out)
    rows = {row["clip_id"]: row for row in store.clips.to_pylist()}
    assert set(rows) == set(layout.clips) and len(rows) == 12
    for name, want in layout.clips.items():
        row = rows[name]
        kept = resample_indices(want["frames"], want["fps"])
        assert (row["split"], row["subject"], row["label"]) == (want["split"], want["subject"], want["label"])
        assert row["source_fps"] == want["fps"] and row["fps"] == 100.0
        assert row["frame_count"] == len(kept)
        assert row["apex"] == resample_index(want["apex"], want["frames"], want["fps"])
        assert (row["label_index"] == UNLABELLED) == (want["split"] != "train")
    assert sorted(store.column("split").tolist()) == ["test_A"] * 3 + ["test_B"] * 3 + ["train"] * 6
    rep = json.loads(report_path(out).read_text())
    assert rep["frames_read"] == rep["frames_stored"] == int(store.column("frame_count").sum())
    assert rep["frames_read"] < layout.frames_written  # 200-500 fps: only every k-th frame is decoded
    assert sorted(rep["face_boxes"]) == sorted(layout.clips)
    r = CliRunner().invoke(app, ["store", "info", str(out), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["splits"] == {"train": 6, "test_A": 3, "test_B": 3} and info["classes"]["(unlabelled)"] == 6
    assert info["features"] == {"flow_roi": [18, 2]}
    r = CliRunner().invoke(app, ["store", "verify", str(out)])
    assert r.exit_code == 0, r.output


def test_stored_frames_are_the_face_crops_of_the_kept_frames(layout, tmp_path):
    name = next(n for n, c in layout.clips.items() if c["fps"] == 200.0)
    sheets = [dfme.read_annotations(p) for p in layout.annotation_files]
    sources, _ = dfme.clip_sources(layout.root, sheets)
    src = next(s for s in sources if s.clip_id == name)
    rep = ingest([src], tmp_path / "s", labels=list(dfme.EMOTIONS), options=IngestOptions(size=32), workers=1)
    l, t, r, b = rep.face_boxes[name]
    assert r - l == b - t > 60  # a square box around a face spanning 3/4 of a 128-pixel frame
    third = cv2.imread(str(src.frame_paths[4]), cv2.IMREAD_GRAYSCALE)  # kept frame 2 at 200 fps
    want = cv2.resize(third[t:b, l:r], (32, 32), interpolation=cv2.INTER_AREA)
    got = FrameStore(tmp_path / "s").frames(0)[2]
    assert l >= 0 and t >= 0 and r <= 128 and b <= 128  # inside the frame: no edge repeated
    assert np.array_equal(got, want)


def test_rgb_frames_keep_their_colour(layout, tmp_path):
    sheets = [dfme.read_annotations(p) for p in layout.annotation_files]
    sources, _ = dfme.clip_sources(layout.root, sheets)
    rep = ingest(sources[:2], tmp_path / "s", labels=list(dfme.EMOTIONS), options=IngestOptions(size=24, color="rgb"),
                 workers=1)
    store = FrameStore(tmp_path / "s")
    assert rep.written == 2 and store.frame_shape == (24, 24, 3) and store.frames(0).shape[1:] == (24, 24, 3)


def test_fps_from_an_option_when_the_sheet_has_none(tmp_path):
    lay = write_dfme_layout(tmp_path / "d", small(train=1), fps_column=False)
    out = tmp_path / "s"
    r = CliRunner().invoke(app, ["ingest", str(lay.root), "--format", "dfme", "--out", str(out), "--crop", "none"])
    said = " ".join(r.output.split())
    assert r.exit_code == 2 and "no frame-rate column" in said and "--fps" in said
    r = CliRunner().invoke(app, ["ingest", str(lay.root), "--format", "dfme", "--out", str(out), "--crop", "none",
                                 "--fps", "200", "--size", "16", "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert set(FrameStore(out).column("source_fps")) == {200.0}


def test_bad_inputs_are_reported_and_the_rest_is_built(tmp_path):
    lay = write_dfme_layout(tmp_path / "d", small(train=3))
    root, sheet = lay.root, lay.annotation_files[0]
    names = sorted(lay.clips)
    (root / names[0] / "1.jpg").write_bytes(b"")  # zero-byte JPEG
    (root / names[1] / "4.jpg").unlink()  # a frame missing in the middle
    shutil.rmtree(root / names[2])  # a row pointing at a folder that does not exist
    for f in (root / names[3]).iterdir():  # a clip with no face
        cv2.imwrite(str(f), np.full((128, 128), 90, np.uint8))
    lines = sheet.read_text().splitlines()
    lines += [f"../{names[4]},sub01,1,1,2,3,200",  # a path that tries to leave the data root
              "dfme_x,sub01,9,1,2,3,200",  # EmotionId 9 does not exist
              "dfme_y,sub01,,1,2,3,200"]  # a training row without a label
    sheet.write_text("\n".join(lines) + "\n")
    sources, skips = dfme.clip_sources(root, [dfme.read_annotations(sheet)])
    rep = ingest(sources, tmp_path / "s", labels=list(dfme.EMOTIONS), options=IngestOptions(size=16),
                 workers=2, pre_skipped=skips)
    why = {s.item: s.reason for s in rep.skipped}
    row = lambda n, name: f"train.csv row {n} ({name})"  # noqa: E731
    assert why[names[0]].endswith("1.jpg: empty file (0 bytes)")
    assert why[row(names.index(names[1]) + 2, names[1])] == \
        f"{root / names[1]}: frame 4 missing in the middle of the clip (after 3.jpg)"
    assert why[row(4, names[2])] == f"clip folder {root / names[2]} does not exist"
    assert why[names[3]].endswith("no face found on the onset frame (1.jpg)")
    assert "leaves the data root" in why[row(11, f"../{names[4]}")]
    assert "unknown emotion '9'" in why[row(12, "dfme_x")]
    assert "training row without a label" in why[row(13, "dfme_y")]
    assert len(rep.skipped) == 7 and rep.written == 9 - 4
    assert sorted(FrameStore(tmp_path / "s").column("clip_id").tolist()) == names[4:]


def test_frames_are_ordered_by_number_and_gaps_are_named(tmp_path):
    for n in (1, 2, 10, 11, 3, 4, 5, 6, 7, 8, 9):
        cv2.imwrite(str(tmp_path / f"img_{n}.jpg"), np.zeros((8, 8), np.uint8))
    paths, first = numbered_frames(tmp_path)
    assert [p.name for p in paths[:4]] == ["img_1.jpg", "img_2.jpg", "img_3.jpg", "img_4.jpg"]
    assert paths[-1].name == "img_11.jpg" and first == 1
    (tmp_path / "img_6.jpg").unlink()
    (tmp_path / "img_7.jpg").unlink()
    with pytest.raises(ClipError, match=r"frames 6\.\.7 missing in the middle of the clip \(after img_5.jpg\)"):
        numbered_frames(tmp_path)


def test_column_variants_splits_and_labels(tmp_path):
    sheet = tmp_path / "annotations.csv"
    sheet.write_text("file_name,SUBJECT,Emotion Id,Frame Rate,set\n"
                     "a,s1,4,300,train\nb,s2,,500,Test-A\nc,s3,surprise,200,testB\nd,s4,2,200,validation\n")
    table = dfme.read_annotations(sheet)
    assert table.columns_used == {"filename": "file_name", "subject": "SUBJECT", "emotion": "Emotion Id",
                                  "fps": "Frame Rate", "split": "set"}
    a, b, c, d = table.rows
    assert (a.split, a.label, a.fps) == ("train", "happiness", 300.0)
    assert (b.split, b.label, b.problem) == ("test_A", None, None)  # test rows are unlabelled
    assert (c.split, c.label) == ("test_B", "surprise")
    assert "split 'validation'" in d.problem
    assert [dfme.split_of_name(n) for n in ("train_data.xlsx", "test_A_without_labels.xlsx", "TestB.csv",
                                            "latest_a.csv")] == ["train", "test_A", "test_B", None]
    with pytest.raises(ValueError, match="does not say which split"):
        (tmp_path / "labels.csv").write_text("Filename,Subject,fps\na,s1,200\n")
        dfme.read_annotations(tmp_path / "labels.csv")
