"""The whole distributed path at once, on a real multi-node cluster (``ray.cluster_utils``:
a head with no CPUs, two worker nodes, Ray token auth on), the driver a separate ``orch``
process, every run on a real ``orch server`` on loopback and the store on an S3 server on
loopback: the source directory is gone, so every trial can only fetch the store; trials
spread over both nodes; each node fetches it exactly once into its own cache (``{node}``
in ``ORCH_STORE_CACHE``); the runs and their artifacts are on the server, nothing in the
workdir's own tracking store."""
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
from tests.support.cluster import ray_cluster
from tests.support.run_tree import trial_runs
from tests.support.tracking_server import orch_server  # noqa: F401

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_sweep_on_a_cluster_fetches_the_store_once_per_node(s3_server, orch_server, tiny_store, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(tiny_store, source)
    uri = s3_server.bucket_uri("stores/tiny")
    fingerprint = publish(source, uri).fingerprint
    shutil.rmtree(source)  # no trial can open the source path: only the URI is left
    cache = tmp_path / "cache"
    env = {"ORCH_STORE_CACHE": str(cache / "{node}")}  # the nodes inherit it
    with ray_cluster(workers=2, env=env) as cluster:
        wd = tmp_path / "work"
        env = {k: v for k, v in cluster.env.items() if k != "MLFLOW_TRACKING_URI"}
        r = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "ablation", "--store", uri, "--seeds", "4",
             "--lengths", "4", "--epochs", "1", "--address", cluster.address, "--workdir", str(wd),
             "--tracking-uri", orch_server.uri, "--experiment", "from-s3", "--no-progress"],
            cwd=ROOT, capture_output=True, text=True, timeout=300, env={**env, "COLUMNS": "200"})
        assert r.returncode == 0, r.stdout + r.stderr
        assert "4 trained, 0 reused" in r.stdout, r.stdout
        node_ids = set(cluster.node_ids)

    assert not (wd / "mlflow.db").exists() and not (wd / "mlartifacts").exists()  # all on the server
    client = MlflowClient(orch_server.uri)
    runs = trial_runs(client, client.get_experiment_by_name("from-s3").experiment_id)
    assert len(runs) == 4 and {x.info.status for x in runs} == {"FINISHED"}
    assert {x.data.params["data.store"] for x in runs} == {uri}  # the trials were given the URI, not a path
    assert {x.data.params["data.store_fingerprint"] for x in runs} == {fingerprint}
    for x in runs:  # the artifacts went through the server
        names = {a.path for a in client.list_artifacts(x.info.run_id)}
        assert {"confusion_test.json", "predictions_test.csv", "samples.json", "experiment.yaml"} <= names, names
    used = {Path(x.data.tags["orch.store_cache"]).parent.name for x in runs}
    assert used == node_ids  # trials ran on both worker nodes, each from its own cache
    for node in used:
        fetches = [json.loads(line) for line in (cache / node / FETCHES_LOG).read_text().splitlines()]
        assert [f["fingerprint"] for f in fetches] == [fingerprint]  # once per node, however many trials
        assert FrameStore(cache / node / fingerprint).fingerprint == fingerprint
    driver = [d for d in cache.iterdir() if d.name not in node_ids]
    assert len(driver) == 1 and len((driver[0] / FETCHES_LOG).read_text().splitlines()) == 1  # planning
