"""A report rebuilt from the tracking store alone (``orch table NAME``): no workdir file,
no frame store. The MLflow experiment NAME's latest sweep parent run (``orch.run_kind =
sweep``, the most recently run) holds the experiment (``experiment.yaml``) and its planned trials
(``trials.json``); its children (``mlflow.parentRunId``) are the trials' runs, one picked per
trial name as the sweep picked it (``trainables.tracking.pick_run`` with the parent's code
digest and reuse setting); planned trials without a FINISHED run are flagged; the
experiment's protocol reports them — the same ``Report`` the end of the sweep wrote."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from orchestrator import protocols
from orchestrator.experiment import Experiment
from orchestrator.sweep_run import EXPERIMENT_ARTIFACT, INVOKED_TAG, REUSE_TAG, TRIALS_ARTIFACT
from orchestrator.reports.context import PlannedTrial, ReportContext
from orchestrator.reports.report import Report
from orchestrator.reports.runs import ConfusionReader, classes_of, group_by_name, pick_results
from trainables.mlflow_filter import mlflow_quote
from trainables.tracking import CODE_DIGEST_TAG, PARENT_RUN_TAG, RUN_KIND_TAG, SWEEP_PARENT_TAG
from trainables.tracking_retry import Backoff



class TableError(Exception):
    """The report cannot be rebuilt; the message says why and what to do."""


@dataclass
class Rebuilt:
    report: Report
    parent_run_id: str
    sweep: str  # the parent's sweep key
    others: list[str] = field(default_factory=list)  # the experiment's other sweeps (their keys), newest first


def _artifact(client: MlflowClient, run_id: str, path: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, path, tmp)
        except (MlflowException, OSError) as e:
            raise TableError(f"parent run {run_id}: no {path} artifact ({str(e).splitlines()[0]})") from None
        return Path(local).read_text()


def parent_runs(client: MlflowClient, experiment_id: str) -> list:
    """The experiment's sweep parent runs, the most recently run first (a re-run reopens its
    parent, which keeps its start time: ordered by ``orch.invoked_at_ms``)."""
    runs = Backoff().call(lambda: client.search_runs(
        [experiment_id], filter_string=f"tags.`{RUN_KIND_TAG}` = 'sweep'",
        order_by=["attributes.start_time DESC"], max_results=1000), "looking up the sweeps' parent runs")
    return sorted(runs, key=lambda r: int(r.data.tags.get(INVOKED_TAG) or r.info.start_time or 0), reverse=True)


def rebuild(uri: str, name: str, sweep: str | None = None) -> Rebuilt:
    client = MlflowClient(uri)
    found = Backoff().call(lambda: client.get_experiment_by_name(name), "looking up the experiment")
    if found is None or found.lifecycle_stage == "deleted":
        there = sorted(e.name for e in client.search_experiments())
        gone = " (it is deleted: restore it in the MLflow UI or with `mlflow experiments restore`)" if found else ""
        raise TableError(f"no MLflow experiment {name!r} in {uri}{gone}; the experiments there: "
                         f"{', '.join(there) or 'none'}")
    parents = parent_runs(client, found.experiment_id)
    if not parents:
        raise TableError(f"experiment {name!r} has no sweep parent run (tag {RUN_KIND_TAG}=sweep): its runs were "
                         f"made by an older orch; run the command that made them again (its finished trials are "
                         f"reused, not trained again) and it makes one")
    keys = [p.data.tags.get(SWEEP_PARENT_TAG, "") for p in parents]
    if sweep is not None:
        if sweep not in keys:
            raise TableError(f"experiment {name!r}: no sweep {sweep!r}; its sweeps (newest first): {', '.join(keys)}")
        parent = parents[keys.index(sweep)]
    else:
        parent = parents[0]
    key = parent.data.tags.get(SWEEP_PARENT_TAG, "")
    pid = parent.info.run_id
    try:
        exp = Experiment.from_dict(yaml.safe_load(_artifact(client, pid, EXPERIMENT_ARTIFACT)))
    except (ValueError, TypeError, yaml.YAMLError) as e:
        raise TableError(f"parent run {pid}: experiment.yaml: {e}") from None
    if key.endswith("/search") or exp.search is not None:
        raise TableError(f"sweep {key!r} of {name!r} is a search (validation only, no test set): its table is the "
                         f"best configuration's, `orch table {exp.name}-best`")
    try:
        listed = json.loads(_artifact(client, pid, TRIALS_ARTIFACT))
        if not isinstance(listed, list):
            raise ValueError(f"expected a JSON list, got {type(listed).__name__}")
        planned = [PlannedTrial.from_dict(d) for d in listed]
    except ValueError as e:
        raise TableError(f"parent run {pid}: trials.json: {e}") from None
    children = Backoff().call(lambda: client.search_runs(
        [found.experiment_id], filter_string=f"tags.`{PARENT_RUN_TAG}` = {mlflow_quote(pid)}",
        order_by=["attributes.start_time DESC"], max_results=50_000), "reading the sweep's runs")
    results, unfinished = pick_results(group_by_name(children), [t.name for t in planned],
                                       parent.data.tags.get(CODE_DIGEST_TAG, ""),
                                       parent.data.tags.get(REUSE_TAG, "false") == "true")
    context = ReportContext(exp, planned, classes_of(results), unfinished, ConfusionReader(uri))
    report = protocols.get(exp.protocol.kind).report(results, context)
    return Rebuilt(report, pid, key, [k for k in keys if k != key])
