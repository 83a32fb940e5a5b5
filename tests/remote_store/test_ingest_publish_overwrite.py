"""``orch ingest --out URI`` publishes the store; ``--overwrite`` (ingest and publish)
replaces only a store, never a folder or prefix that holds anything else."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from storage.location import MARKER, read_manifest, remote_fs
from storage.sources.synthetic.layouts import small, write_video_manifest
from storage.store import FrameStore, StoreError, StoreWriter
from storage.store_cache import StoreCache
from tests.remote_store.helpers import random_store


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return write_video_manifest(tmp_path_factory.mktemp("manifest"), small(train=2, test_A=1), frame_folders=0)


def _ingest(layout, out: str, *extra: str):
    return CliRunner().invoke(app, ["ingest", str(layout.root / "manifest.csv"), "--format", "manifest",
                                    "--out", out, "--size", "16", "--crop", "none", "--features", "none",
                                    "--workers", "1", *extra])


def test_ingest_out_uri_publishes_the_store_and_its_report(s3_server, layout, tmp_path):
    uri = s3_server.bucket_uri("ingested/store")
    r = _ingest(layout, uri)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert f"published" in said and f"store: {uri} report: {uri}.ingest.json" in said
    manifest = read_manifest(uri)
    fs, base = remote_fs(uri)
    with fs.open_input_stream(f"{base}.ingest.json") as f:
        report = json.loads(f.read())
    assert report["store"] == uri and report["written"] == manifest.clips == 9
    cached = StoreCache(tmp_path / "cache").open(uri)
    assert cached.store.fingerprint == manifest.fingerprint and len(cached.store) == 9


def test_overwrite_refuses_a_folder_that_is_not_a_store(layout, tmp_path):
    folder = tmp_path / "my-folder"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    r = _ingest(layout, str(folder), "--overwrite")
    assert r.exit_code == 2
    said = " ".join(r.output.split())
    assert f"{folder}: not an orch store, so overwrite will not replace it: it holds thesis.tex" in said
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.tex"]
    assert (folder / "thesis.tex").read_text() == "years of work"
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a directory, so not an orch store"):
        StoreWriter(tmp_path / "file", labels=["a"], frame_shape=(4, 4), overwrite=True)
    half = tmp_path / "half"
    half.mkdir()
    (half / "clips.arrow").write_bytes(b"")
    with pytest.raises(StoreError, match="not both clips.arrow and frames.arrow"):
        StoreWriter(half, labels=["a"], frame_shape=(4, 4), overwrite=True)


def test_overwrite_replaces_a_store(tmp_path):
    path = random_store(tmp_path / "s", seed=1)
    old = FrameStore(path).fingerprint
    with StoreWriter(path, labels=["a"], frame_shape=(4, 4), overwrite=True):
        pass
    assert FrameStore(path).fingerprint != old and len(FrameStore(path)) == 0


def test_publish_overwrite_refuses_a_prefix_that_is_not_a_store(s3_server, tmp_path):
    store = random_store(tmp_path / "s", seed=3)
    uri = s3_server.bucket_uri("shared/data")
    fs, base = remote_fs(uri, create_bucket=True)
    with fs.open_output_stream(f"{base}/results.csv") as f:
        f.write(b"a,b\n1,2\n")
    r = CliRunner().invoke(app, ["store", "publish", str(store), uri, "--overwrite"])
    assert r.exit_code == 2
    assert (f"{uri}: not an orch store, so --overwrite will not replace it: it holds results.csv"
            in " ".join(r.output.split()))
    with fs.open_input_stream(f"{base}/results.csv") as f:
        assert f.read() == b"a,b\n1,2\n"
    assert fs.get_file_info(f"{base}/{MARKER}").type.name == "NotFound"

    ok = s3_server.bucket_uri("stores/s")
    assert CliRunner().invoke(app, ["store", "publish", str(store), ok]).exit_code == 0
    again = CliRunner().invoke(app, ["store", "publish", str(store), ok])
    assert again.exit_code == 2 and "pass --overwrite" in again.output
    assert CliRunner().invoke(app, ["store", "publish", str(store), ok, "--overwrite"]).exit_code == 0
    info = CliRunner().invoke(app, ["store", "info", ok, "--json"])
    assert info.exit_code == 0, info.output
    summary = json.loads(info.stdout)  # what the fetch said went to stderr
    assert summary["path"] == ok and summary["fingerprint"] == FrameStore(store).fingerprint


def test_publish_benchmark_publishes_once_under_its_name(s3_server, tmp_path):
    from rich.console import Console

    from orchestrator.store_uri import publish_benchmark

    local = random_store(tmp_path / "synthetic-abc123", seed=4)  # as the workdir's benchmark cache names it
    base = s3_server.bucket_uri("benchmarks")
    console = Console(record=True, width=200)
    uri = publish_benchmark(local, base, console)
    assert uri == f"{base}/synthetic-abc123" and read_manifest(uri).fingerprint == FrameStore(local).fingerprint
    assert publish_benchmark(local, base, console) == uri
    assert "already there" in console.export_text()
