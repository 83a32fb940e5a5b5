"""GPUs explicitly, on a real multi-node Ray cluster with logical GPUs (``ray.cluster_utils``):
``--gpus-per-trial 0.25`` packs four trials onto each GPU, each trial records the GPU and
node it ran on, and a trial given a GPU while torch has no CUDA refuses to start with the
reason (unless ``--allow-cpu-for-gpu-trials``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.support.cluster import ray_cluster
from tests.support.run_tree import trial_runs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gpu_cluster():
    """A head with nothing for trials and two worker nodes of 8 CPUs and 1 logical GPU each
    (token auth on): the CPUs would take 8 trials per node, the GPU only 4 at 0.25."""
    with ray_cluster(workers=2, cpus_per_worker=8, gpus_per_worker=1) as cluster:
        yield cluster


def _orch(cluster, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in cluster.env.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**env, "COLUMNS": "200"})


def _max_overlap(intervals: list[tuple[int, int]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = now = 0
    for _, d in events:
        now += d
        best = max(best, now)
    return best


def test_quarter_gpus_pack_four_trials_per_gpu(gpu_cluster, tiny_store, tmp_path):
    cluster = gpu_cluster
    wd = tmp_path / "work"
    common = ["--store", str(tiny_store), "--token", "pixel_diff", "--workdir", str(wd), "--address",
              cluster.address, "--gpus-per-trial", "0.25", "--no-progress"]

    dry = _orch(cluster, "ablation", "--seeds", "4", "--lengths", "4,all", *common, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    said = " ".join(dry.stdout.split())
    assert said.count("8 CPU, 1 GPU -> 4 trials at once (4 per GPU)") == 2, said
    assert "in all 8 trials at once: 8 trials in 1 round" in said

    # CPU-only torch here: without the flag, a trial given a GPU refuses to start
    r = _orch(cluster, "ablation", "--seeds", "1", "--lengths", "4", "--epochs", "1", "--experiment", "refused", *common)
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 1, out
    assert "DeviceError" in out and "given GPU 0 by Ray" in out and "has no CUDA" in out, out

    r = _orch(cluster, "ablation", "--seeds", "6", "--lengths", "4,all", "--epochs", "6", "--experiment", "packed", *common,
              "--allow-cpu-for-gpu-trials")
    assert r.returncode == 0, r.stdout + r.stderr
    client = MlflowClient(f"sqlite:///{wd / 'mlflow.db'}")
    exp = client.get_experiment_by_name("packed")
    runs = trial_runs(client, exp.experiment_id)
    assert len(runs) == 12 and all(run.info.status == "FINISHED" for run in runs)
    workers = set(cluster.node_ids)
    by_node: dict[str, list] = {}
    for run in runs:
        tags = run.data.tags
        assert tags["orch.gpu_ids"] == "0" and "--allow-cpu-for-gpu-trials" in tags["orch.device"]
        by_node.setdefault(tags["orch.node"], []).append((run.info.start_time, run.info.end_time))
    assert set(by_node) == workers  # never on the head (no CPUs for trials there)
    # Ray holds each GPU to four 0.25 trials at once (the CPUs would allow eight), and packs
    # four onto it: 12 trials, 8 at a time
    overlaps = sorted(_max_overlap(v) for v in by_node.values())
    print("runs per node", sorted(len(v) for v in by_node.values()), "most at once per GPU", overlaps)
    assert overlaps[-1] == 4 and overlaps[0] <= 4
