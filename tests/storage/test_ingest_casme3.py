"""CAS(ME)^3 Part A into the store: the real annotation file with generated frames under its
exact paths, and every kind of bad input the issue names, each reported by reason."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from storage.ingest import IngestOptions, ingest, report_path
from storage.sources import casme3
from storage.sources.synthetic.layouts import write_casme3_layout
from storage.store import FrameStore
from tests.storage.test_casme3 import REAL, needs_real

SUBSET = ("spNO.1", "spNO.3", "spNO.149")


@pytest.fixture(scope="module")
def real_layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("casme3")
    table = casme3.read_annotations(REAL / casme3.LABEL_FILE)
    write_casme3_layout(root, [r for r in table.usable if r.subject in SUBSET])
    return root, table


@needs_real
def test_real_annotations_with_generated_frames_ingest(real_layout, tmp_path):
    root, table = real_layout
    expected = [r for r in table.usable if r.subject in SUBSET]
    sources, skips = casme3.clip_sources(root, table)
    rep = ingest(sources, tmp_path / "store", labels=list(casme3.EMOTIONS_7), options=IngestOptions(size=24), workers=2, pre_skipped=skips)
    assert rep.written == len(expected) == 27
    assert len(rep.skipped) == 860 - 27  # every other row has a line, none is silently lost
    reasons = [s.reason for s in rep.skipped]
    assert sum(r == "clip folder does not exist" for r in reasons) == 860 - 27 - 8
    assert any(s.item.startswith(f"{casme3.LABEL_FILE} row 130 ") and "apex before onset" in s.reason
               for s in rep.skipped)
    assert rep.frames_read == sum(r.frame_count for r in expected) == 621
    store = FrameStore(tmp_path / "store")
    assert len(store) == 27 and store.frame_shape == (24, 24)
    assert set(store.column("fps")) == {30.0}  # 30 fps is never resampled
    rows = store.clips.to_pylist()
    for r, row in zip(expected, rows):
        assert row["clip_id"] == f"{r.subject}_{r.filename}_{r.onset}"
        assert row["frame_count"] == r.frame_count and row["label"] == r.emotion
        assert row["apex"] == r.apex - r.onset and row["split"] == "all"
    on_disk = json.loads(report_path(tmp_path / "store").read_text())
    assert on_disk["written"] == 27 and len(on_disk["skipped"]) == 833


@needs_real
def test_two_ingests_and_worker_counts_give_the_same_store(real_layout, tmp_path):
    root, table = real_layout
    sources, _ = casme3.clip_sources(root, table)
    a = ingest(sources, tmp_path / "a", labels=list(casme3.EMOTIONS_7), options=IngestOptions(size=16), workers=1)
    b = ingest(sources, tmp_path / "b", labels=list(casme3.EMOTIONS_7), options=IngestOptions(size=16), workers=2)
    assert a.written == b.written == 27
    assert FrameStore(tmp_path / "a").fingerprint == FrameStore(tmp_path / "b").fingerprint


def _small_dataset(tmp_path: Path) -> Path:
    """Six rows in the official layout; the test then breaks some of them."""
    root = tmp_path / "data"
    sheet = root / "annotation" / casme3.LABEL_FILE.replace(".xlsx", ".csv")
    sheet.parent.mkdir(parents=True)
    sheet.write_text(
        "Subject,Filename,Onset,Apex,Offset,AU,Objective class,emotion\n"
        "spNO.1,a,10,14,20,12,I,happy\n"
        "spNO.1,b,5,8,12,4,III,disgust\n"
        "spNO.2,c,30,33,36,1,II,Others\n"
        "spNO.2,d,1,3,6,4,III,fear\n"
        "..,e,1,2,3,4,III,sad\n"
        "spNO.3,f,1,2,5,4,III,smug\n"
        "spNO.3,g,1,2,5,4,III,surprise\n")
    table = casme3.read_annotations(sheet)
    write_casme3_layout(root, table.usable)
    return root, sheet


def test_bad_inputs_are_reported_and_the_rest_is_built(tmp_path):
    root, sheet = _small_dataset(tmp_path)
    color = root / "part_A"
    (color / "spNO.1" / "b" / "color" / "8.jpg").write_bytes(b"")  # zero-byte JPEG
    (color / "spNO.2" / "c" / "color" / "33.jpg").unlink()  # a frame missing mid-clip
    shutil.rmtree(color / "spNO.2" / "d")  # a row pointing at a folder that does not exist
    onset = color / "spNO.3" / "g" / "color" / "1.jpg"  # a clip with no face: a blank onset frame
    cv2.imwrite(str(onset), np.full((128, 128), 120, np.uint8))
    table = casme3.read_annotations(sheet)
    sources, skips = casme3.clip_sources(root, table)
    rep = ingest(sources, tmp_path / "s", labels=list(casme3.EMOTIONS_7), options=IngestOptions(size=16), workers=2, pre_skipped=skips)
    why = {s.item: s.reason for s in rep.skipped}
    row = lambda n, clip: f"{sheet.name} row {n} ({clip})"  # noqa: E731 - annotation-level skips
    assert rep.written == 1 and FrameStore(tmp_path / "s").column("clip_id").tolist() == ["spNO.1_a_10"]
    assert why["spNO.1_b_5"].endswith("8.jpg: empty file (0 bytes)")  # decode-level skips: clip id
    assert why["spNO.2_c_30"].endswith("33.jpg: missing")
    assert why[row(5, "spNO.2/d")] == "clip folder does not exist"
    assert "not a plain folder name" in why[row(6, "../e")]  # a path that tries to leave the data root
    assert "unknown emotion 'smug'" in why[row(7, "spNO.3/f")]
    assert why["spNO.3_g_1"] == f"{onset.parent}: no face found on the onset frame (1.jpg)"
    assert len(rep.skipped) == 6
    assert list(rep.face_boxes) == ["spNO.1_a_10"]


def test_damaged_frames_are_replaced_and_noted(tmp_path):
    root, sheet = _small_dataset(tmp_path)
    (root / "annotation" / casme3.DAMAGED_FILE).write_text("spNO.1 a 15.jpg  the image cannot open\n")
    (root / "part_A" / "spNO.1" / "a" / "color" / "15.jpg").write_bytes(b"garbage")
    table = casme3.read_annotations(sheet)
    bad = casme3.read_damaged_frames(root / "annotation" / casme3.DAMAGED_FILE)
    sources, skips = casme3.clip_sources(root, table, bad)
    rep = ingest(sources, tmp_path / "s", labels=list(casme3.EMOTIONS_7), options=IngestOptions(size=16), workers=1, pre_skipped=skips)
    assert "spNO.1_a_10" in FrameStore(tmp_path / "s").column("clip_id").tolist()
    assert rep.notes == ["spNO.1_a_10: 15.jpg (the image cannot open): replaced by 14.jpg"]
    frames = FrameStore(tmp_path / "s").frames(0)
    assert np.array_equal(frames[5], frames[4])  # frame 15 (index 5) is frame 14's copy


def test_orch_ingest_cli_reports_and_strict_fails(tmp_path):
    root, sheet = _small_dataset(tmp_path)
    out = tmp_path / "store"
    args = ["ingest", str(root), "--format", "casme3", "--out", str(out), "--size", "16", "--workers", "1",
            "--annotations", str(sheet)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "5 clips written, 2 skipped" in r.output and "unknown emotion" in r.output
    assert report_path(out).exists() and len(FrameStore(out)) == 5
    r = CliRunner().invoke(app, [*args, "--strict", "--overwrite"])
    assert r.exit_code == 1 and "2 skipped" in r.output
    r = CliRunner().invoke(app, ["ingest", str(root), "--format", "smic", "--out", str(out)])
    assert r.exit_code == 2 and "expected one of dfme, casme3, manifest" in r.output
