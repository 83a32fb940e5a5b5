"""A worker node removed while its trial runs (``ray.cluster_utils.Cluster.remove_node``,
3 worker nodes of 1 CPU, a head with none): the trial resumes on another node from its
last checkpoint and continues the same MLflow run — every trial ends with exactly one
FINISHED run, epochs 1..E once each, final metrics equal to an uninterrupted sweep's."""

from __future__ import annotations

import time

import pytest

from tests.support.cluster import ray_cluster
from tests.support.sweeps import (CHECKPOINT_EVERY, EPOCHS, experiment_file, final_metrics, reference, results,
                                  runs, start_orch, steps, tune_dir)

pytestmark = pytest.mark.slow


def test_a_lost_node_s_trial_resumes_elsewhere_into_the_same_run(tiny_store, tmp_path):
    with ray_cluster(workers=3) as cluster:
        ref = reference(cluster.env, cluster.address, tiny_store, tmp_path.parent / "reference-sweep")
        wd = tmp_path / "work"
        out = tmp_path / "driver.out"
        driver = start_orch(cluster.env, out, "run", str(experiment_file(tmp_path, "loss", tiny_store)),
                            "--address", cluster.address, "--workdir", str(wd), "--no-progress")

        def all_nodes_mid_trial() -> bool:
            # 3 runs RUNNING at once on 3 one-CPU nodes: every node runs a trial, each past a checkpoint
            busy = [r for r in runs(wd, "loss") if r.info.status == "RUNNING" and len(steps(wd, r)) >= CHECKPOINT_EVERY]
            return len(busy) >= 3

        deadline = time.monotonic() + 400  # guards a hang only
        while not all_nodes_mid_trial():
            assert driver.poll() is None, f"the driver ended before every node ran a trial:\n{out.read_text()[-3000:]}"
            assert time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.1)
        cluster.remove_worker(0)
        assert driver.wait(timeout=600) == 0, out.read_text()[-5000:]

    after = runs(wd, "loss")
    assert len(after) == 4 and len({r.data.tags["orch.trial_key"] for r in after}) == 4
    assert {r.info.status for r in after} == {"FINISHED"}
    for r in after:
        assert steps(wd, r) == list(range(1, EPOCHS + 1)), r.info.run_name
    assert final_metrics(wd, "loss") == ref
    # the lost node's trial was restored from its checkpoint on another node, not started again
    tune_path = tune_dir(wd / "ray_results", "loss")
    resumed = {}
    for trial in tune_path.iterdir():
        rows = results(trial)
        restarts = [row["epoch"] for row in rows if row["iterations_since_restore"] == 1 and row["epoch"] > 1]
        if restarts:
            resumed[trial.name] = restarts
            assert [row["epoch"] for row in rows].count(1) == 1
    assert resumed and all(min(e) > CHECKPOINT_EVERY for e in resumed.values()), resumed
