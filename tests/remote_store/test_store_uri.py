"""Stores by URI against a real S3 server on loopback (moto): publish, open by URI with the
fingerprint verified, interrupted and damaged uploads refused, one fetch per node under
concurrency, a bounded cache that never evicts a store in use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from storage.location import MARKER, is_remote, local_path, publish, read_manifest, remote_fs
from storage.store import FrameStore, StoreError
from storage.store_cache import FETCHES_LOG, StoreCache, cache_limit, cache_root, open_store
from tests.remote_store.helpers import random_store

ROOT = Path(__file__).resolve().parents[2]


def _fetches(root: Path) -> list[dict]:
    log = root / FETCHES_LOG
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return random_store(tmp_path_factory.mktemp("src") / "store", seed=1)


def test_published_store_opens_by_uri_verified_and_once_per_node(s3_server, store, tmp_path, monkeypatch):
    uri = s3_server.bucket_uri("stores/one")
    seen = []

    def no_store_yet(done, total):  # while the data files go up, the prefix is no store
        with pytest.raises(StoreError, match="not a published orch store"):
            read_manifest(uri)
        seen.append(done)

    manifest = publish(store, uri, progress=no_store_yet)
    assert seen and seen[-1] == manifest.size
    seen.clear()
    publish(store, uri, overwrite=True, progress=no_store_yet)  # the old marker goes first
    assert seen
    src = FrameStore(store)
    assert manifest.fingerprint == src.fingerprint == read_manifest(uri).fingerprint
    monkeypatch.setenv("ORCH_STORE_CACHE", str(tmp_path / "cache" / "{node}"))

    fs, lease = open_store(uri, node="node-a")
    assert lease.fetched and lease.path == tmp_path / "cache" / "node-a" / src.fingerprint
    assert fs.fingerprint == src.fingerprint and len(fs) == len(src)
    assert all(np.array_equal(fs.frames(i), src.frames(i)) for i in range(len(src)))
    again, lease2 = open_store(uri, node="node-a")  # the node's copy: no second fetch
    assert not lease2.fetched and again.path == fs.path
    other, lease3 = open_store(uri, node="node-b")  # another node fetches its own
    assert lease3.fetched and other.path.parent.name == "node-b"
    assert [f["fingerprint"] for f in _fetches(tmp_path / "cache" / "node-a")] == [src.fingerprint]
    assert len(_fetches(tmp_path / "cache" / "node-b")) == 1


def test_locations_local_paths_and_uris(tmp_path, monkeypatch, store):
    assert is_remote("s3://b/x") and is_remote("gs://b/x") and not is_remote(str(store))
    assert not is_remote(f"file://{store}") and local_path(f"file://{store}") == store
    fs, lease = open_store(f"file://{store}")  # opened where it is: no cache
    assert lease is None and fs.path == store
    with pytest.raises(ValueError, match="unsupported store URI scheme 'http'"):
        open_store("http://example.org/store")
    monkeypatch.setenv("ORCH_STORE_CACHE", "/c/{node}/x")
    assert cache_root("n7") == Path("/c/n7/x")
    monkeypatch.setenv("ORCH_STORE_CACHE_BYTES", "1.5G")
    assert cache_limit() == int(1.5 * 2**30)
    monkeypatch.setenv("ORCH_STORE_CACHE_BYTES", "lots")
    with pytest.raises(ValueError, match="ORCH_STORE_CACHE_BYTES"):
        cache_limit()


def test_an_upload_without_its_marker_is_not_a_store(s3_server, store, tmp_path):
    uri = s3_server.bucket_uri("half")
    publish(store, uri)
    fs, base = remote_fs(uri)
    fs.delete_file(f"{base}/{MARKER}")  # what an interrupted publish leaves: data files, no marker
    cache = StoreCache(tmp_path / "cache")
    with pytest.raises(StoreError, match=rf"{uri}: not a published orch store — it holds clips.arrow, "
                                         rf"frames.arrow but no {MARKER}: an upload that did not finish"):
        cache.open(uri)
    assert not _fetches(cache.root) and not cache.entries()


def test_a_damaged_upload_is_refused_and_never_cached(s3_server, store, tmp_path):
    uri = s3_server.bucket_uri("damaged")
    publish(store, uri)
    fs, base = remote_fs(uri)
    with fs.open_input_stream(f"{base}/frames.arrow") as f:
        data = bytearray(f.read())
    data[len(data) // 2] ^= 0xFF  # one frame byte flipped: same size, other content
    with fs.open_output_stream(f"{base}/frames.arrow") as f:
        f.write(bytes(data))
    cache = StoreCache(tmp_path / "cache")
    with pytest.raises(StoreError, match=f"{uri}: the downloaded content does not match its fingerprint"):
        cache.open(uri)
    with fs.open_output_stream(f"{base}/frames.arrow") as f:
        f.write(bytes(data[:-100]))  # cut short
    with pytest.raises(StoreError, match=rf"{uri}/frames.arrow: {len(data) - 100} bytes, {MARKER} says {len(data)}"):
        cache.open(uri)
    assert not cache.entries() and not _fetches(cache.root)
    assert [p.name for p in cache.root.iterdir() if p.name.startswith(".tmp")] == []


_CONCURRENT = """
import json, sys, time
from pathlib import Path
from storage.store_cache import StoreCache
root, uri, me, other = sys.argv[1:]
Path(me).touch()
while not Path(other).exists():  # both start fetching together
    time.sleep(0.005)
c = StoreCache(Path(root)).open(uri)
print(json.dumps({"fetched": c.fetched, "fingerprint": c.store.fingerprint, "path": str(c.path)}))
"""


def test_two_processes_on_a_node_fetch_once(s3_server, tmp_path):
    big = random_store(tmp_path / "big", seed=2, clips=8, frames=40, side=64)  # ~1.3 MB: a fetch takes a while
    uri = s3_server.bucket_uri("shared")
    publish(big, uri)
    root = tmp_path / "cache"
    flags = [tmp_path / "a.ready", tmp_path / "b.ready"]
    procs = [subprocess.Popen([sys.executable, "-c", _CONCURRENT, str(root), uri, str(me), str(other)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for me, other in (flags, flags[::-1])]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    got = [json.loads(out) for out, _ in outs]
    assert sorted(g["fetched"] for g in got) == [False, True]  # one fetched, the other waited for it
    assert {g["path"] for g in got} == {str(root / FrameStore(big).fingerprint)}
    assert len(_fetches(root)) == 1


def test_cache_evicts_least_recently_used_never_a_store_in_use(s3_server, tmp_path):
    uris = {}
    for name, seed in (("a", 10), ("b", 11), ("c", 12)):
        uris[name] = s3_server.bucket_uri(name)
        publish(random_store(tmp_path / name, seed=seed), uris[name])
    fps = {k: read_manifest(u).fingerprint for k, u in uris.items()}
    root = tmp_path / "cache"
    a = StoreCache(root, limit=10**12).open(uris["a"])
    size = StoreCache(root).entries()[0][1]
    cache = StoreCache(root, limit=int(size * 1.5))  # room for one store and a half

    b = cache.open(uris["b"])  # over the limit, but a is in use and b just opened: both stay
    assert b.evicted == [] and {e[0] for e in cache.entries()} == {fps["a"], fps["b"]}
    a.close()  # a is no longer used by anyone: the least recently used, so it goes first
    c = cache.open(uris["c"])
    assert c.evicted == [fps["a"]]
    assert {e[0] for e in cache.entries()} == {fps["b"], fps["c"]}  # b still in use
    b.close()
    a2 = cache.open(uris["a"])  # fetched again; b (unused, older than c) evicted, c (in use) kept
    assert a2.fetched and a2.evicted == [fps["b"]]
    assert {e[0] for e in cache.entries()} == {fps["a"], fps["c"]}
    assert [f["fingerprint"] for f in _fetches(root)] == [fps["a"], fps["b"], fps["c"], fps["a"]]
    assert np.array_equal(c.store.frames(0), FrameStore(tmp_path / "c").frames(0))  # c's mapping intact


def test_an_experiment_keeps_a_store_uri_and_refuses_an_unknown_scheme(tmp_path):
    from orchestrator.experiment import Experiment

    exp = Experiment.from_dict({"name": "x", "store": "s3://bucket/stores/dfme"})
    path = tmp_path / "exp.yaml"
    path.write_text(exp.to_yaml())
    again = Experiment.from_yaml(path)
    assert again.store == again.trial.data.store == "s3://bucket/stores/dfme"
    with pytest.raises(ValueError, match=r"store: ftp://h/s: unsupported store URI scheme 'ftp'"):
        Experiment.from_dict({"name": "x", "store": "ftp://h/s"})
