"""A real Ray Tune sweep from an s3:// store on a real multi-node cluster
(``ray.cluster_utils``: a head with no CPUs, two worker nodes), the driver a separate
``orch`` process: the source directory is gone, so every trial can only fetch the store;
each node fetches it exactly once into its own cache (``{node}`` in ``ORCH_STORE_CACHE``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from storage.location import publish
from storage.store import FrameStore
from storage.store_cache import FETCHES_LOG

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_sweep_on_a_cluster_fetches_the_store_once_per_node(s3_server, tiny_store, tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    source = tmp_path / "source"
    shutil.copytree(tiny_store, source)
    uri = s3_server.bucket_uri("stores/tiny")
    fingerprint = publish(source, uri).fingerprint
    shutil.rmtree(source)  # no trial can open the source path: only the URI is left
    cache = tmp_path / "cache"
    monkeypatch.setenv("ORCH_STORE_CACHE", str(cache / "{node}"))  # before the nodes start: they inherit it
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        wd = tmp_path / "work"
        r = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "ablation", "--store", uri, "--seeds", "4",
             "--lengths", "4", "--epochs", "1", "--address", cluster.address, "--workdir", str(wd),
             "--experiment", "from-s3", "--no-progress"],
            cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
        assert r.returncode == 0, r.stdout + r.stderr
        assert "4 trained, 0 reused" in r.stdout, r.stdout
    finally:
        cluster.shutdown()

    client = MlflowClient(f"sqlite:///{wd / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("from-s3").experiment_id])
    assert len(runs) == 4 and {x.info.status for x in runs} == {"FINISHED"}
    assert {x.data.params["data.store"] for x in runs} == {uri}  # the trials were given the URI, not a path
    assert {x.data.params["data.store_fingerprint"] for x in runs} == {fingerprint}
    node_ids = {w.node_id for w in workers}
    used = {Path(x.data.tags["orch.store_cache"]).parent.name for x in runs}
    assert used == node_ids  # trials ran on both worker nodes, each from its own cache
    for node in used:
        fetches = [json.loads(line) for line in (cache / node / FETCHES_LOG).read_text().splitlines()]
        assert [f["fingerprint"] for f in fetches] == [fingerprint]  # once per node, however many trials
        assert FrameStore(cache / node / fingerprint).fingerprint == fingerprint
    driver = [d for d in cache.iterdir() if d.name not in node_ids]
    assert len(driver) == 1 and len((driver[0] / FETCHES_LOG).read_text().splitlines()) == 1  # planning
