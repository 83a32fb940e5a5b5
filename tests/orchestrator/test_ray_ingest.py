"""Ingest on Ray: clips read by Ray tasks give the same store, byte for byte, as local
worker processes, and the CLI runs it on the cluster it is pointed at."""

from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.ray_ingest import ray_map
from storage.ingest import IngestOptions, ingest
from storage.sources import dfme
from storage.sources.synthetic.layouts import small, write_dfme_layout
from storage.store import FrameStore


def test_ray_tasks_build_the_same_store_as_processes(ray_session, tmp_path):
    lay = write_dfme_layout(tmp_path / "d", small(train=2, test_A=1))
    sheets = [dfme.read_annotations(p) for p in lay.annotation_files]
    sources, skips = dfme.clip_sources(lay.root, sheets)
    (lay.root / sources[4].clip_id / "1.jpg").write_bytes(b"")  # one bad clip, reported either way
    opts = IngestOptions(size=24)
    local = ingest(sources, tmp_path / "local", labels=list(dfme.EMOTIONS), options=opts, workers=2)
    on_ray = ingest(sources, tmp_path / "ray", labels=list(dfme.EMOTIONS), options=opts,
                    mapper=ray_map(window=3))
    assert on_ray.written == local.written == 8
    assert [s.reason for s in on_ray.skipped] == [s.reason for s in local.skipped]
    assert on_ray.face_boxes == local.face_boxes
    assert FrameStore(tmp_path / "ray").fingerprint == FrameStore(tmp_path / "local").fingerprint


def test_cli_ingests_on_the_ray_it_is_given(ray_session, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORCH_WORKDIR", raising=False)
    lay = write_dfme_layout(tmp_path / "d", small(train=1))
    out = tmp_path / "s"
    r = CliRunner().invoke(app, ["ingest", str(lay.root), "--format", "dfme", "--out", str(out), "--size", "16",
                                 "--ray", "auto"])
    assert r.exit_code == 0, r.output
    assert len(FrameStore(out)) == 3
    assert ray_session.is_initialized()  # a Ray it did not start is left running
    assert not (tmp_path / "orch-work").exists()  # connecting to a cluster writes nothing here
