from mlflow import MlflowClient

import pytest

from trainables.tracking import TrackingConfig, TrialRun


@pytest.fixture
def tracking(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = MlflowClient(uri).create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
    return lambda key: TrackingConfig(uri, exp, key, "sweep:1", f"run-{key}")


def test_same_key_continues_the_same_run_without_duplicating_epochs(tracking):
    run = TrialRun.open(tracking("k1"), {"seed": "1"})
    run.log_epoch(1, {"val_uf1": 0.1})
    run.log_epoch(2, {"val_uf1": 0.2})
    run.fail("boom")
    client = MlflowClient(tracking("k1").uri)
    assert client.get_run(run.run_id).info.status == "FAILED"
    assert "boom" in client.get_run(run.run_id).data.tags["orch.error"]

    again = TrialRun.open(tracking("k1"), {"seed": "1", "late": "x"})  # the retry
    assert again.run_id == run.run_id and again.logged_epochs == 2
    reopened = client.get_run(run.run_id)
    assert reopened.info.status == "RUNNING" and "orch.error" not in reopened.data.tags
    assert reopened.data.params == {"seed": "1", "late": "x"}  # missing params logged
    again.log_epoch(2, {"val_uf1": 0.2})  # re-trained epoch from an older checkpoint
    again.log_epoch(3, {"val_uf1": 0.3})
    steps = [m.step for m in client.get_metric_history(run.run_id, "val_uf1")]
    assert sorted(steps) == [1, 2, 3]

    again.finish({"test_uf1": 0.5}, {"confusion_test.json": "{}", "sub/predictions_test.csv": b"clip_id\n"})
    r = client.get_run(run.run_id)
    assert r.info.status == "FINISHED" and r.data.metrics["test_uf1"] == 0.5
    arts = {a.path for a in client.list_artifacts(run.run_id)} | {a.path for a in client.list_artifacts(run.run_id, "sub")}
    assert arts == {"confusion_test.json", "sub", "sub/predictions_test.csv"}

    done = TrialRun.open(tracking("k1"), {"seed": "1"})
    assert done.finished and done.run_id == run.run_id
    other = TrialRun.open(tracking("k2"), {"seed": "2"})
    assert other.run_id != run.run_id
    assert len(client.search_runs([r.info.experiment_id])) == 2
