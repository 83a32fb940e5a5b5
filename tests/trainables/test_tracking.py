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
    # buffered until a flush (the trainable flushes before every checkpoint and at the end)
    assert sorted(m.step for m in client.get_metric_history(run.run_id, "val_uf1")) == [1, 2]
    again.flush()
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


def test_a_run_is_reused_or_continued_only_by_the_code_that_made_it(tracking):
    import dataclasses

    def cfg(code, across=False):
        return dataclasses.replace(tracking("k"), code_digest=code, reuse_across_versions=across)

    client = MlflowClient(cfg("a").uri)
    old = TrialRun.open(cfg("a"), {"seed": "1"})
    assert client.get_run(old.run_id).data.tags["orch.code_digest"] == "a"
    old.log_epoch(1, {"val_uf1": 0.1})
    old.fail("boom")

    # other code: the FAILED run of code a is not continued (its epochs are a's), a new one starts
    new = TrialRun.open(cfg("b"), {"seed": "1"})
    assert new.run_id != old.run_id and new.logged_epochs == 0 and new.code_digest == "b"
    new.finish({"test_uf1": 0.5}, {})
    assert client.get_run(old.run_id).info.status == "FAILED"

    # code a again: its own run is continued, not b's FINISHED one
    again = TrialRun.open(cfg("a"), {"seed": "1"})
    assert again.run_id == old.run_id and not again.finished and again.logged_epochs == 1
    again.fail("boom again")

    # code c: nothing of its own, so nothing reused ...
    fresh = TrialRun.open(cfg("c"), {"seed": "1"})
    assert fresh.run_id not in (old.run_id, new.run_id) and not fresh.finished
    fresh.fail("stop")
    # ... unless asked to reuse across versions: b's FINISHED run, which says b made it
    reused = TrialRun.open(cfg("d", across=True), {"seed": "1"})
    assert reused.finished and reused.run_id == new.run_id and reused.code_digest == "b"
    # and this code's own FINISHED run wins over another code's
    mine = TrialRun.open(cfg("b", across=True), {"seed": "1"})
    assert mine.run_id == new.run_id
