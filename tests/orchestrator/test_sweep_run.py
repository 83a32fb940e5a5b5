"""The sweep's MLflow experiment and parent run (``orchestrator.sweep_run``) on a real
SQLite tracking store: experiment tags and description, a deleted experiment refused, the
parent found again by its sweep key, long params kept whole as artifacts."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.experiment import Experiment
from orchestrator.protocols import TrialPlan
from orchestrator.sweep_run import (DeletedExperiment, SweepParent, command_line, describe, ensure_experiment)
from storage.selection import Roles, Selection
from trainables.tracking import (PARENT_RUN_TAG, RUN_KIND_TAG, SWEEP_PARENT_TAG, TrackingConfig, TrialRun)
from trainables.trainable import _role_params
from trainables.run_params import fit_params

CODE = {"digest": "abc123", "version": "0.1", "git_commit": "f" * 40, "git_dirty": "false"}


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    """One SQLite store for the module (each new one costs seconds of migrations); every test its own experiments."""
    return f"sqlite:///{tmp_path_factory.mktemp('tracking') / 'mlflow.db'}"


def test_a_new_and_an_existing_experiment_get_the_kind_and_the_description(uri, tmp_path):
    exp = Experiment(name="abl", seeds=(0, 1, 2), lengths=("4", "all"))
    text = describe(exp, "0123456789abcdef")
    eid = ensure_experiment(uri, "abl", tmp_path / "artifacts", text)
    tags = MlflowClient(uri).get_experiment(eid).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    note = tags["mlflow.note.content"]
    for said in ("protocol **ablation**", "3 seeds x 2 lengths (4, all)", "the built-in benchmark 'default'",
                 "0123456789ab", "`orch table abl`", "`reports/`", "train='train'"):
        assert said in note, (said, note)

    # one made before orch tagged its experiments (or by hand): tagged when orch uses it
    old = MlflowClient(uri).create_experiment("untagged")
    assert "mlflow.experimentKind" not in MlflowClient(uri).get_experiment(old).tags
    assert ensure_experiment(uri, "untagged", tmp_path / "artifacts", "what it is") == old
    tags = MlflowClient(uri).get_experiment(old).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development" and tags["mlflow.note.content"] == "what it is"


def test_a_deleted_experiment_is_refused_not_restored(uri, tmp_path):
    client = MlflowClient(uri)
    eid = ensure_experiment(uri, "gone", tmp_path / "artifacts")
    client.delete_experiment(eid)
    with pytest.raises(DeletedExperiment) as e:
        ensure_experiment(uri, "gone", tmp_path / "artifacts")
    said = str(e.value)
    assert f"'gone' (id {eid})" in said and "is deleted" in said
    assert f"mlflow experiments restore --experiment-id {eid}" in said and uri in said
    assert "--experiment NAME" in said and "mlflow gc" in said
    assert client.get_experiment(eid).lifecycle_stage == "deleted"  # left as it was


def test_the_cli_says_what_to_do_about_a_deleted_experiment_without_a_traceback(uri, tiny_store, tmp_path):
    wd = tmp_path / "work"
    client = MlflowClient(uri)
    client.delete_experiment(client.create_experiment("gone-cli", artifact_location=(tmp_path / "a").as_uri()))
    r = CliRunner().invoke(app, ["ablation", "--seeds", "1", "--lengths", "4", "--epochs", "1", "--store",
                                 str(tiny_store), "--experiment", "gone-cli", "--workdir", str(wd),
                                 "--tracking-uri", uri, "--no-progress"])
    assert r.exit_code == 2, r.output
    said = " ".join(r.output.split())
    assert "is deleted" in said and "mlflow experiments restore" in said and "Traceback" not in r.output
    assert not (wd / "ray_results").exists() or not any((wd / "ray_results").iterdir())  # nothing ran


def _open_parent(uri, eid, exp, plans, n_trials=None, code=CODE, reuse=False):
    return SweepParent.open(uri, eid, "key-1", exp, plans, len(plans) if n_trials is None else n_trials,
                            "fp0123456789", code, reuse, "orch ablation --seeds 2", exp.name)


def test_the_parent_is_found_again_by_its_sweep_key_and_describes_the_latest_invocation(uri, tmp_path):
    exp = Experiment(name="abl-parent", seeds=(0, 1), lengths=("4",))
    eid = ensure_experiment(uri, "abl-parent", tmp_path / "artifacts")
    plans = [TrialPlan(f"seed{s}-N4", s, "4", "", Roles(Selection(("train",)), Selection(("test_A",))))
             for s in (0, 1)]
    client = MlflowClient(uri)
    first = _open_parent(uri, eid, exp, plans)
    assert client.get_run(first.run_id).info.status == "RUNNING"
    first.close(0)
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "abl-parent"
    assert run.data.tags[RUN_KIND_TAG] == "sweep" and run.data.tags[SWEEP_PARENT_TAG] == "key-1"
    assert run.data.tags["orch.n_trials"] == "2" and run.data.tags["orch.n_failed"] == "0"
    assert run.data.params == {**exp.params(), "data.store_fingerprint": "fp0123456789"}

    # a trial's run is its child
    child = TrialRun.open(TrackingConfig(uri, eid, "trial-1", "key-1", "seed0-N4", "abc123",
                                         parent_run_id=first.run_id), {"seed": "0"})
    tags = client.get_run(child.run_id).data.tags
    assert tags[PARENT_RUN_TAG] == first.run_id and tags[RUN_KIND_TAG] == "trial"

    # another process (a later invocation), other code, one trial that fails: the same parent,
    # reopened, its tags and artifacts this invocation's; params unchanged
    again = _open_parent(uri, eid, Experiment(name="abl-parent", seeds=(0,), lengths=("4",)), plans[:1],
                         code={**CODE, "digest": "new"}, reuse=True)
    assert again.run_id == first.run_id and client.get_run(again.run_id).info.status == "RUNNING"
    again.close(1)
    run = client.get_run(first.run_id)
    assert run.info.status == "FAILED" and run.data.tags["orch.n_failed"] == "1"
    assert run.data.tags["orch.code_digest"] == run.data.tags["code.digest"] == "new"
    assert run.data.tags["orch.reuse_across_versions"] == "true" and run.data.tags["orch.n_trials"] == "1"
    trials = json.loads(open(client.download_artifacts(first.run_id, "trials.json", str(tmp_path))).read())
    assert trials == [{"name": "seed0-N4", "seed": 0, "length": "4", "fold": ""}]
    assert open(client.download_artifacts(first.run_id, "command.txt", str(tmp_path))).read() == \
        "orch ablation --seeds 2\n"
    assert len(client.search_runs([eid], filter_string=f"tags.`{RUN_KIND_TAG}` = 'sweep'")) == 1

    # a sweep that failed itself (not its trials) or was interrupted says so
    _open_parent(uri, eid, exp, plans).close(None, RuntimeError("storage gone"))
    run = client.get_run(first.run_id)
    assert run.info.status == "FAILED" and run.data.tags["orch.error"] == "RuntimeError: storage gone"
    _open_parent(uri, eid, exp, plans).close(None, KeyboardInterrupt())
    assert client.get_run(first.run_id).info.status == "KILLED"
    assert "orch.error" not in client.get_run(first.run_id).data.tags  # cleared when it was reopened


def test_a_found_run_becomes_a_child_of_the_current_parent(uri, tmp_path):
    eid = ensure_experiment(uri, "x", tmp_path / "artifacts")
    cfg = TrackingConfig(uri, eid, "trial-1", "key-1", "seed0-N4", "abc123")
    old = TrialRun.open(cfg, {"seed": "0"})  # made before parents existed
    old.finish({"test_uf1": 0.5}, {})
    client = MlflowClient(uri)
    client.delete_tag(old.run_id, RUN_KIND_TAG)
    reused = TrialRun.open(TrackingConfig(uri, eid, "trial-1", "key-1", "seed0-N4", "abc123", parent_run_id="p1"),
                           {"seed": "0"})
    assert reused.run_id == old.run_id and reused.finished
    tags = client.get_run(old.run_id).data.tags
    assert tags[PARENT_RUN_TAG] == "p1" and tags[RUN_KIND_TAG] == "trial"


def test_a_subject_list_too_long_for_a_param_is_an_artifact_named_by_the_param(uri, tmp_path):
    subjects = tuple(f"subject-{i:04d}-{'x' * 40}" for i in range(200))  # ~10,000 characters
    roles = Roles(Selection(("train",), subjects), Selection(("train",), subjects[:3]))
    params, files = fit_params({"seed": "1", **_role_params(roles)})
    assert params["subjects.train"] == "200 subjects: see artifact params/subjects.train.txt"
    assert params["subjects.validation"] == ",".join(subjects[:3]) and params["seed"] == "1"
    assert list(files) == ["params/subjects.train.txt"]
    assert fit_params({"note": "y" * 7000})[0]["note"] == "7000 characters: see artifact params/note.txt"

    # on a real run: MLflow takes the param, and the artifact holds the whole list
    eid = ensure_experiment(uri, "long", tmp_path / "artifacts")
    run = TrialRun.open(TrackingConfig(uri, eid, "t", "k", "seed1-Nall", "abc"), params)
    run.log_files(files)
    client = MlflowClient(uri)
    assert client.get_run(run.run_id).data.params["subjects.train"] == params["subjects.train"]
    held = open(client.download_artifacts(run.run_id, "params/subjects.train.txt", str(tmp_path))).read()
    assert held.strip().split(",") == list(subjects)


def test_the_command_line_is_the_orch_command_quoted():
    assert command_line(["/x/.venv/bin/orch", "run", "my exp.yaml"]) == "orch run 'my exp.yaml'"
    assert command_line(["/x/orchestrator/cli.py", "resume", "a"]) == "orch resume a"


def test_sweeps_of_one_invocation_under_one_key_add_up_on_their_parent(uri, tmp_path):
    """A nested LOSO search: one sweep per fold, one key, the same experiment object."""
    exp = Experiment(name="nested", seeds=(0,), lengths=("all",))
    eid = ensure_experiment(uri, "nested", tmp_path / "artifacts")
    fold = lambda f: [TrialPlan(f"search-fold-{f}-seed0-Nall", 0, "all", f,  # noqa: E731
                                Roles(Selection(("all",)), Selection(("all",))))]
    first = _open_parent(uri, eid, exp, fold("s1"), n_trials=2)
    first.close(1)
    second = _open_parent(uri, eid, exp, fold("s2"), n_trials=2)
    second.close(0)
    client = MlflowClient(uri)
    run = client.get_run(first.run_id)
    assert second.run_id == first.run_id and run.info.status == "FAILED"
    assert run.data.tags["orch.n_trials"] == "4" and run.data.tags["orch.n_failed"] == "1"
    trials = json.loads(open(client.download_artifacts(first.run_id, "trials.json", str(tmp_path))).read())
    assert [t["fold"] for t in trials] == ["s1", "s2"]
    # a later invocation (another experiment object) counts afresh
    _open_parent(uri, eid, Experiment(name="nested", seeds=(0,), lengths=("all",)), fold("s1"), n_trials=2).close(0)
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["orch.n_trials"] == "2"


def test_the_latest_invocation_s_parent_comes_first(uri, tmp_path):
    """Sweep A, sweep B, then A again under one experiment: A's parent (reopened, its start
    time unchanged) is the latest, so `orch table` (``parent_runs``) reports A."""
    from orchestrator.reports.from_mlflow import parent_runs

    exp = Experiment(name="abl-order", seeds=(0,), lengths=("4",))
    eid = ensure_experiment(uri, "abl-order", tmp_path / "artifacts")
    plans = [TrialPlan("seed0-N4", 0, "4", "", Roles(Selection(("train",)), Selection(("test_A",))))]
    opened = {}
    for key in ("key-A", "key-B", "key-A"):
        p = SweepParent.open(uri, eid, key, exp, plans, 1, "fp0123456789", CODE, False, "orch", exp.name)
        opened.setdefault(key, p.run_id)
        p.close(0)
    client = MlflowClient(uri)
    order = [r.data.tags[SWEEP_PARENT_TAG] for r in parent_runs(client, eid)]
    assert order == ["key-A", "key-B"]
    assert client.get_run(opened["key-A"]).info.start_time < client.get_run(opened["key-B"]).info.start_time


def test_a_description_the_user_wrote_is_kept(uri, tmp_path):
    eid = ensure_experiment(uri, "described", tmp_path / "artifacts", describe(Experiment(name="described"), "f" * 12))
    MlflowClient(uri).set_experiment_tag(eid, "mlflow.note.content", "my notes on this experiment")
    ensure_experiment(uri, "described", tmp_path / "artifacts", describe(Experiment(name="described"), "f" * 12))
    assert MlflowClient(uri).get_experiment(eid).tags["mlflow.note.content"] == "my notes on this experiment"
