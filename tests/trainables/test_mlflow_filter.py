"""Filter strings quote ids and names safely (a subject id with a quote in it)."""

import pytest
from mlflow import MlflowClient

from orchestrator.reports.runs import finished_runs
from trainables.mlflow_filter import mlflow_quote
from trainables.tracking import TrackingConfig, TrialRun


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return uri, MlflowClient(uri).create_experiment("q", artifact_location=(tmp_path / "art").as_uri())


def test_a_quoted_value_matches_itself_and_nothing_else(store):
    uri, exp = store
    client = MlflowClient(uri)
    values = ["O'Brien", 'say "hi"', "O", "plain", "back\\slash"]
    ids = {v: client.create_run(exp, tags={"k": v}).info.run_id for v in values}
    for v in values:
        found = client.search_runs([exp], filter_string=f"tags.k = {mlflow_quote(v)}")
        assert [r.info.run_id for r in found] == [ids[v]], v
    with pytest.raises(ValueError, match="both ' and"):
        mlflow_quote("it's \"both\"")


def test_a_trial_whose_key_has_a_quote_finds_its_own_run_again(store):
    uri, exp = store
    cfg = TrackingConfig(uri, exp, "sweep/fold-O'Brien/abc", "sweep:1'x", "fold-O'Brien")
    run = TrialRun.open(cfg, {"seed": "0", "length": "all", "fold": "O'Brien"})
    run.log_epoch(1, {"val_uf1": 0.5})
    run.fail("stopped")
    again = TrialRun.open(cfg, {"seed": "0"})  # found by its key, not a second run
    assert again.run_id == run.run_id and again.logged_epochs == 1
    again.finish({"test_uf1": 0.7}, {})
    assert len(MlflowClient(uri).search_runs([exp])) == 1
    # the report's query quotes the sweep key the same way
    got = finished_runs(uri, exp, "sweep:1'x")
    assert [r.run_id for r in got] == [run.run_id] and got[0].fold == "O'Brien"
