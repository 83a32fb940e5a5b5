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

        def checkpointed_trial() -> dict | None:
            # a trial past its first checkpoint with epochs still to train: its last Tune result says which
            # worker process (pid) runs it
            path = tune_dir(wd / "ray_results", "loss")
            for trial in (path.iterdir() if path else []):
                rows = results(trial) if trial.is_dir() else []
                if rows and rows[-1].get("checkpoint_dir_name") and rows[-1]["epoch"] <= 2 * CHECKPOINT_EVERY:
                    return rows[-1]
            return None

        deadline = time.monotonic() + 400  # guards a hang only
        while (row := checkpointed_trial()) is None:
            assert driver.poll() is None, f"the driver ended before a checkpoint:\n{out.read_text()[-3000:]}"
            assert time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.05)
        cluster.remove_worker_running(row["pid"])
        lost = row["trial_id"]
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
    assert lost in resumed and min(resumed[lost]) > CHECKPOINT_EVERY, resumed
