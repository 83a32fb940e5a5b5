"""A worker node removed while its trial runs (``ray.cluster_utils.Cluster.remove_node``,
3 worker nodes of 1 CPU, a head with none, token auth on), the store on an S3 server on
loopback (its source directory gone) and the runs on an ``orch server``: the trial resumes
on another node from its last checkpoint and continues the same MLflow run — every trial
ends with exactly one FINISHED run, epochs 1..E once each, final metrics equal to an
uninterrupted sweep's."""

from __future__ import annotations

import shutil
import time

import pytest

from storage.location import publish
from tests.support.cluster import ray_cluster
from tests.support.tracking_server import orch_server  # noqa: F401
from tests.support.run_tree import one_parent
from tests.support.sweeps import (CHECKPOINT_EVERY, EPOCHS, client, experiment_file, final_metrics, reference,
                                  results, runs, start_orch, steps, tune_dir)

pytestmark = pytest.mark.slow


def test_a_lost_node_s_trial_resumes_elsewhere_into_the_same_run(s3_server, orch_server, tiny_store, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(tiny_store, source)
    store = s3_server.bucket_uri("stores/tiny")
    publish(source, store)
    shutil.rmtree(source)  # the trials can only fetch the store
    with ray_cluster(workers=3, env={"ORCH_STORE_CACHE": str(tmp_path / "cache" / "{node}")}) as cluster:
        ref = reference(cluster.env, cluster.address, tiny_store, tmp_path.parent / "reference-sweep")
        wd = tmp_path / "work"
        out = tmp_path / "driver.out"
        driver = start_orch(cluster.env, out, "run", str(experiment_file(tmp_path, "loss", store)),
                            "--address", cluster.address, "--workdir", str(wd), "--tracking-uri", orch_server.uri,
                            "--no-progress")

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

    tracking = orch_server.uri
    after = runs(tracking, "loss")
    assert len(after) == 4 and len({r.data.tags["orch.trial_key"] for r in after}) == 4
    assert {r.info.status for r in after} == {"FINISHED"}
    # the resumed trial stayed the child of the sweep's one parent (on the orch server)
    one_parent(client(tracking), client(tracking).get_experiment_by_name("loss").experiment_id, n_children=4)
    for r in after:
        assert steps(tracking, r) == list(range(1, EPOCHS + 1)), r.info.run_name
    assert {r.data.params["data.store"] for r in after} == {store}
    assert final_metrics(tracking, "loss") == ref
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
