"""A sweep's parent run made in a test exactly per the run-hierarchy contract (the tags,
params and artifacts a sweep's parent holds), from the experiment's real finished trial
runs — for the narrow ``orch table`` tests on hand-written runs (``test_table_cli``); a
sweep makes its own (``orchestrator.sweep_run``). If the experiment already has a parent,
that one is used and nothing is written."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml
from mlflow import MlflowClient

from orchestrator.experiment import Experiment
from orchestrator.reports.from_mlflow import parent_runs
from orchestrator.sweep_run import N_TRIALS_TAG, REUSE_TAG
from trainables.tracking import CODE_DIGEST_TAG, PARENT_RUN_TAG, RUN_KIND_TAG, SWEEP_KEY_TAG, SWEEP_PARENT_TAG


def ensure_parent(uri: str, experiment: str, command: str = "orch (test)") -> str:
    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    existing = parent_runs(client, exp_id)
    if existing:
        return existing[0].info.run_id
    runs = client.search_runs([exp_id], max_results=1000, order_by=["attributes.start_time DESC"])
    keys = {r.data.tags[SWEEP_KEY_TAG] for r in runs}
    assert len(keys) == 1, f"one sweep expected in {experiment}, found {keys}"
    first = runs[0]
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(client.download_artifacts(first.info.run_id, "experiment.yaml", tmp)).read_text()
    exp = Experiment.from_dict(yaml.safe_load(text))
    trials = {r.info.run_name: {"name": r.info.run_name, "seed": int(r.data.params["seed"]),
                                "length": r.data.params["length"], "fold": r.data.params.get("fold", "")}
              for r in runs}
    p = first.data.params
    parent = client.create_run(exp_id, run_name=experiment, tags={
        RUN_KIND_TAG: "sweep", SWEEP_PARENT_TAG: keys.pop(), CODE_DIGEST_TAG: first.data.tags[CODE_DIGEST_TAG],
        REUSE_TAG: "false", N_TRIALS_TAG: str(len(trials)),
        **{k: v for k, v in p.items() if k.startswith("code.")}})  # as orch's: what changes are tags
    pid = parent.info.run_id
    for k, v in {**exp.params(), "data.store_fingerprint": p["data.store_fingerprint"]}.items():
        client.log_param(pid, k, v)
    client.log_text(pid, text, "experiment.yaml")
    client.log_text(pid, json.dumps(list(trials.values())), "trials.json")
    client.log_text(pid, command, "command.txt")
    for r in runs:
        client.set_tag(r.info.run_id, PARENT_RUN_TAG, pid)
        client.set_tag(r.info.run_id, RUN_KIND_TAG, "trial")
    client.set_terminated(pid, "FINISHED")
    return pid


def tables_from_mlflow_alone(wd: Path, experiment: str, store: Path) -> dict[str, str]:
    """``orch table EXPERIMENT`` in every format, with the workdir's ``reports/`` deleted
    and the frame store's directory gone (moved away, then back): what it prints comes from
    the tracking store alone — from the parent run the sweep made."""
    import shutil

    from typer.testing import CliRunner

    from orchestrator.cli import app

    client = MlflowClient(f"sqlite:///{wd / 'mlflow.db'}")
    assert parent_runs(client, client.get_experiment_by_name(experiment).experiment_id), \
        f"{experiment}: the sweep made no parent run"
    shutil.rmtree(wd / "reports", ignore_errors=True)
    away = store.with_name(store.name + "-moved-away")
    store.rename(away)
    try:
        out = {}
        for fmt in ("md", "latex", "csv"):
            r = CliRunner().invoke(app, ["table", experiment, "--format", fmt, "--workdir", str(wd)])
            assert r.exit_code == 0, r.output
            out[fmt] = r.stdout
        assert not (wd / "reports").exists()
        return out
    finally:
        away.rename(store)
