"""A real ``orch server`` on loopback, a real sweep sent to it with ``--tracking-uri``
(``orch ablation`` as a separate driver process, local Ray), and the server killed mid-sweep
and started again on the same port and backend: the runs and their artifacts are on the
server, nothing is written to the sweep's workdir store, no trial fails, and no epoch is
lost or logged twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.support.tracking_server import ROOT, listening_addresses, orch_server  # noqa: F401 (fixture)
from tests.support.run_tree import one_parent, trial_runs

pytestmark = pytest.mark.slow

EPOCHS = 30  # enough that the trials are still training when the server is killed
EPOCH_METRICS = ("val_uf1", "val_uar", "train_loss", "lr")  # (best_val_uf1 is also a final metric, step 0)


def _wait(predicate, what: str, within_s: float = 300.0, every_s: float = 0.2):
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(every_s)
    raise AssertionError(f"gave up waiting for {what}")


def _logged_epochs(client: MlflowClient, experiment: str) -> int:
    """The most epochs any run of ``experiment`` holds (0 if none yet)."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return 0
    runs = client.search_runs([exp.experiment_id])
    return max((len(client.get_metric_history(r.info.run_id, "val_uf1")) for r in runs), default=0)


@pytest.fixture(scope="module")
def outage_sweep(orch_server, tiny_store, tmp_path_factory):  # noqa: F811
    """``orch ablation --tracking-uri`` on the server; once a run holds 2 epochs the server
    is killed (SIGKILL to it and its workers), and started again 3 s later."""
    wd = tmp_path_factory.mktemp("sweep") / "work"
    env = {**os.environ, "ORCH_TRACKING_FLUSH_S": "0"}  # every epoch is sent at once: the outage hits them
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "orchestrator.cli", "ablation", "--seeds", "1", "--lengths", "4,all",
           "--epochs", str(EPOCHS), "--store", str(tiny_store), "--experiment", "served",
           "--tracking-uri", orch_server.uri, "--workdir", str(wd), "--no-progress"]
    out = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        # the test's own client gives up fast (it only asks while the server is up)
        client = MlflowClient(orch_server.uri)
        _wait(lambda: proc.poll() is not None or _logged_epochs(client, "served") >= 2, "2 epochs on the server")
        if proc.poll() is not None:
            out.seek(0)
            raise AssertionError("the sweep ended before the outage:\n" + out.read().decode(errors="replace")[-4000:])
        t0 = time.time()
        orch_server.kill()
        killed_at = time.time()
        time.sleep(3)
        orch_server.start()
        back_at = time.time()
        code = proc.wait(600)
        print(f"timing: kill {killed_at - t0:.1f} s, restart {back_at - killed_at:.1f} s, "
              f"sweep after {time.time() - back_at:.1f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
    out.seek(0)
    return {"code": code, "output": out.read().decode(errors="replace"), "workdir": wd,
            "killed_at": killed_at, "back_at": back_at}


def _runs(uri: str, experiment: str):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client, exp, trial_runs(client, exp.experiment_id)


def test_the_sweep_went_to_the_server_with_its_artifacts_and_nothing_to_the_workdir(orch_server, outage_sweep):  # noqa: F811
    s = outage_sweep
    assert s["code"] == 0, s["output"][-4000:]
    assert f"open {orch_server.uri}" in s["output"]  # the summary points at the server's UI
    client, exp, runs = _runs(orch_server.uri, "served")
    assert sorted(r.info.run_name for r in runs) == ["seed0-N4", "seed0-Nall"]
    assert exp.artifact_location.startswith("mlflow-artifacts:")  # served: workers need no shared path
    for r in runs:
        assert {"confusion_test.json", "confusion_test.png", "predictions_test.csv"} <= {
            a.path for a in client.list_artifacts(r.info.run_id)}
        with tempfile.TemporaryDirectory() as d:
            confusion = json.loads(Path(client.download_artifacts(r.info.run_id, "confusion_test.json", d)).read_text())
            predictions = Path(client.download_artifacts(r.info.run_id, "predictions_test.csv", d)).read_text()
        assert len(confusion["matrix"]) == len(confusion["classes"])
        assert predictions.startswith("clip_id,true,predicted\n")
        stored = orch_server.workdir / "mlartifacts" / exp.experiment_id / r.info.run_id / "artifacts"
        assert (stored / "confusion_test.json").is_file()  # under the server's --artifacts-destination
    wd = s["workdir"]
    assert not (wd / "mlflow.db").exists() and not (wd / "mlartifacts").exists()
    assert (wd / "reports" / "served" / "table4.csv").is_file()  # the report read the server's runs


def test_a_server_killed_mid_sweep_loses_nothing_and_doubles_nothing(orch_server, outage_sweep):  # noqa: F811
    s = outage_sweep
    assert s["code"] == 0, s["output"][-4000:]
    assert "2 trained, 0 reused" in s["output"] and "0 failed after retries" in s["output"]
    errors = list((s["workdir"] / "ray_results").rglob("error.txt"))
    assert not errors, f"a trial failed (and was retried): {errors}"
    client, _, runs = _runs(orch_server.uri, "served")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    one_parent(client, runs[0].info.experiment_id, n_children=2)  # the outage left the parent closed, FINISHED
    during_outage = 0
    for r in runs:
        for key in EPOCH_METRICS:
            steps = [m.step for m in client.get_metric_history(r.info.run_id, key)]
            assert sorted(steps) == list(range(1, EPOCHS + 1)), (r.info.run_name, key, sorted(steps))
        during_outage += sum(s["killed_at"] * 1000 < m.timestamp < s["back_at"] * 1000
                             for m in client.get_metric_history(r.info.run_id, "val_uf1"))
        for key in ("test_uf1", "test_uar", "test_acc", "best_val_uf1", "best_epoch"):
            assert key in r.data.metrics, (r.info.run_name, key)
        assert "orch.error" not in r.data.tags
    # the trials kept training while the server was down (those epochs were delivered later)
    assert during_outage > 0
    # and a run was closed only after the server was back: its trial waited, it did not fail
    assert max(r.info.end_time for r in runs) > s["back_at"] * 1000


def test_orch_server_binds_loopback_and_checks_host_headers(orch_server):  # noqa: F811
    # MLFLOW_HOST=0.0.0.0 and MLFLOW_SERVER_ALLOWED_HOSTS=* are in its environment (the
    # fixture): a bare `mlflow server` would obey them, `orch server` does not
    assert listening_addresses(orch_server.port) == {"127.0.0.1"}
    url = f"{orch_server.uri}/api/2.0/mlflow/experiments/search?max_results=1"

    def status(host: str) -> int:
        req = urllib.request.Request(url, headers={"Host": host})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    assert status(f"127.0.0.1:{orch_server.port}") == 200
    assert status(f"localhost:{orch_server.port}") == 200
    # MLflow's default would let any private address through; orch sets --allowed-hosts
    assert status(f"10.1.2.3:{orch_server.port}") == 403
    assert status(f"evil.example:{orch_server.port}") == 403
