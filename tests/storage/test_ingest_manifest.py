"""Generic manifests into the store: mp4 videos (decord) and frame folders (OpenCV) listed in
a CSV, ingested end to end with exact counts; bad rows and bad videos reported by reason
while the rest is built."""

import json

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from storage.ingest import IngestOptions, ingest, report_path
from storage.preprocess.temporal import resample_index, resample_indices
from storage.sources import manifest
from storage.sources.synthetic.layouts import small, write_video_manifest
from storage.sources.synthetic.videos import truncate
from storage.store import FrameStore

SPEC = small(train=2, test_A=1)  # 9 clips


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return write_video_manifest(tmp_path_factory.mktemp("manifest"), SPEC, frame_folders=2)


def test_videos_and_frame_folders_ingest_end_to_end(layout, tmp_path):
    out = tmp_path / "store"
    r = CliRunner().invoke(app, ["ingest", str(layout.root / "manifest.csv"), "--format", "manifest",
                                 "--out", str(out), "--size", "32", "--workers", "2", "--strict"])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "9 clips written, 0 skipped" in said
    store = FrameStore(out)
    rows = {row["clip_id"]: row for row in store.clips.to_pylist()}
    assert set(rows) == set(layout.clips)
    assert sum(k.endswith(".mp4") for k in rows) == 7
    for rel, want in layout.clips.items():
        row = rows[rel]
        assert (row["split"], row["subject"], row["label"]) == (want["split"], want["subject"], want["label"])
        assert row["frame_count"] == len(resample_indices(want["frames"], want["fps"]))
        assert row["apex"] == resample_index(want["apex"], want["frames"], want["fps"])
        assert row["source_fps"] == want["fps"]
    assert store.labels == sorted({c["label"] for c in layout.clips.values()})
    rep = json.loads(report_path(out).read_text())
    assert len(rep["face_boxes"]) == 9 and rep["frames_stored"] == int(store.column("frame_count").sum())


def test_bad_rows_and_bad_videos_are_reported_and_the_rest_is_built(layout, tmp_path):
    root = layout.root
    videos = sorted(k for k in layout.clips if k.endswith(".mp4"))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes((root / videos[0]).read_bytes())
    truncate(broken, 0.6)  # a download cut short
    lines = (root / "manifest.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    extra = [
        f"{broken},sub01,anger,200,,,,train",  # absolute, outside the data root
        "../escape.mp4,sub01,anger,200,,,,train",  # tries to leave the data root
        "videos/none.mp4,sub01,anger,200,,,,train",  # does not exist
        f"{videos[1]},sub01,smug,200,,,,train",  # a label outside the vocabulary
        f"{videos[2]},sub01,anger,200,0,1,2,train",  # the same video again: its clip id is taken
    ]
    (root / "bad").mkdir(exist_ok=True)
    inner = root / "bad" / "cut.mp4"
    inner.write_bytes(broken.read_bytes())
    extra.append("bad/cut.mp4,sub01,anger,200,,,,train")  # truncated mp4 inside the root
    m = tmp_path / "manifest.csv"
    m.write_text("\n".join([header, *rows, *extra]) + "\n")
    table = manifest.read_manifest(m, root=root, labels=sorted({c["label"] for c in layout.clips.values()}))
    rep = ingest(table.sources, tmp_path / "s", labels=table.labels, options=IngestOptions(size=16),
                 workers=2, pre_skipped=table.skipped)
    why = {s.item: s.reason for s in rep.skipped}
    n = len(rows) + 2  # first extra row's spreadsheet row
    assert "leaves the data root" in why[f"manifest.csv row {n} ({broken})"]
    assert "leaves the data root" in why[f"manifest.csv row {n + 1} (../escape.mp4)"]
    assert why[f"manifest.csv row {n + 2} (videos/none.mp4)"].endswith("video file does not exist")
    assert "unknown label 'smug'" in why[f"manifest.csv row {n + 3} ({videos[1]})"]
    assert "clip id" in why[f"manifest.csv row {n + 4} ({videos[2]})"]  # same path twice: refused
    assert str(inner) in why["bad/cut.mp4"] and "not a readable video" in why["bad/cut.mp4"]
    assert len(rep.skipped) == 6 and rep.written == 9


def test_a_span_past_the_end_of_a_video_is_named(layout, tmp_path):
    video = sorted(k for k in layout.clips if k.endswith(".mp4"))[0]
    n = layout.clips[video]["frames"]
    m = tmp_path / "m.csv"
    m.write_text(f"path,subject,label,fps,onset,offset,clip_id\n{video},s,x,100,0,{n + 5},long\n"
                 f"{video},s,x,100,2,{n - 1},short\n")
    table = manifest.read_manifest(m, root=layout.root)
    rep = ingest(table.sources, tmp_path / "s", labels=table.labels, options=IngestOptions(size=16, crop="none"),
                 workers=1)
    assert rep.written == 1 and FrameStore(tmp_path / "s").column("frame_count").tolist() == [n - 2]
    (skip,) = rep.skipped
    assert skip.item == "long" and f"the clip ends at frame {n + 5}, the video has {n} frames" in skip.reason


def test_a_video_is_opened_once_per_clip(layout, tmp_path, monkeypatch):
    from storage.sources import video

    opened = []
    real_open = video._open
    monkeypatch.setattr(video, "_open", lambda path: opened.append(path) or real_open(path))
    videos = sorted(k for k in layout.clips if k.endswith(".mp4"))[:2]
    m = tmp_path / "m.csv"
    m.write_text("path,subject,label,fps\n" + "".join(f"{v},s,x,200\n" for v in videos))
    table = manifest.read_manifest(m, root=layout.root)
    rep = ingest(table.sources, tmp_path / "s", labels=table.labels, options=IngestOptions(size=16), workers=1)
    assert rep.written == 2 and opened == [layout.root / v for v in videos]  # decord indexes the whole file on open
