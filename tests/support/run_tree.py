"""What the tests read back of a sweep's run hierarchy (``orchestrator.sweep_run``): the
trials' runs only, and the one parent run of an experiment's sweep, checked."""

from __future__ import annotations

import json

from mlflow import MlflowClient

from trainables.tracking import PARENT_RUN_TAG, RUN_KIND_TAG, SWEEP_KEY_TAG, SWEEP_PARENT_TAG

TRIALS = f"tags.`{RUN_KIND_TAG}` = 'trial'"  # a search_runs filter: the trials' runs, not their parents


def trial_runs(client: MlflowClient, experiment_id: str, **kw) -> list:
    return client.search_runs([experiment_id], filter_string=TRIALS, max_results=1000, **kw)


def artifact_names(client: MlflowClient, run_id: str) -> set[str]:
    return {f.path for f in client.list_artifacts(run_id)}


def one_parent(client: MlflowClient, experiment_id: str, n_children: int, status: str = "FINISHED"):
    """The experiment's run tree: exactly one parent run (its sweep) with ``status``, and
    every other run one of its ``n_children`` trials (``orch.run_kind=trial``, its
    ``mlflow.parentRunId`` the parent's id, the parent's sweep key its sweep). The parent
    holds experiment.yaml, trials.json and command.txt. Returns the parent."""
    every = client.search_runs([experiment_id], max_results=1000)
    parents = [r for r in every if r.data.tags.get(RUN_KIND_TAG) == "sweep"]
    assert len(parents) == 1, [(r.info.run_name, r.data.tags.get(SWEEP_PARENT_TAG)) for r in parents]
    parent = parents[0]
    children = [r for r in every if r.info.run_id != parent.info.run_id]
    assert len(children) == n_children, sorted(r.info.run_name for r in children)
    for r in children:
        assert r.data.tags.get(RUN_KIND_TAG) == "trial", r.info.run_name
        assert r.data.tags.get(PARENT_RUN_TAG) == parent.info.run_id, r.info.run_name
        assert r.data.tags[SWEEP_KEY_TAG] == parent.data.tags[SWEEP_PARENT_TAG], r.info.run_name
    assert parent.info.status == status, parent.info.status
    assert {"experiment.yaml", "trials.json", "command.txt"} <= artifact_names(client, parent.info.run_id)
    return parent


def parent_trials(client: MlflowClient, parent) -> list[dict]:
    """The parent's trials.json: the latest invocation's trials."""
    return json.loads(open(client.download_artifacts(parent.info.run_id, "trials.json")).read())
