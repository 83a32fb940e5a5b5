"""Reading a sweep's trials from MLflow: one run per trial name (the run the trial used,
``trainables.tracking.pick_run``), its final metrics and classes; the trials without a
FINISHED run and why; each run's confusion matrices (its ``confusion_<test>.json``)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlflow import MlflowClient

from trainables.mlflow_filter import mlflow_quote
from trainables.tracking import SWEEP_KEY_TAG, pick_run
from trainables.tracking_retry import Backoff


@dataclass(frozen=True)
class TrialResult:
    run_id: str
    name: str  # the trial's name in its protocol (the run's name)
    seed: int
    length: str
    fold: str
    metrics: dict[str, float]
    classes: tuple[str, ...] = ()  # the run's class names (its data.classes param), in label order

    @property
    def test_uf1(self) -> float:
        return self.metrics["test_uf1"]

    @property
    def test_uar(self) -> float:
        return self.metrics["test_uar"]


def length_key(length: str) -> tuple[int, int]:
    return (1, 0) if length == "all" else (0, int(length))


def result_of(run) -> TrialResult:
    p = run.data.params
    classes = tuple(c for c in p.get("data.classes", "").split(",") if c)
    return TrialResult(run.info.run_id, run.info.run_name, int(p["seed"]), p["length"], p.get("fold", ""),
                       dict(run.data.metrics), classes)


def group_by_name(runs) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for r in runs:
        grouped.setdefault(r.info.run_name, []).append(r)
    return grouped


def pick_results(grouped: dict[str, list], names: Iterable[str], code_digest: str,
                 across_versions: bool) -> tuple[list[TrialResult], dict[str, str]]:
    """Per trial name the run it used (``pick_run``; groups newest first): the FINISHED ones
    as results, and for every other name why it has none (the run's status, or "no run")."""
    results, unfinished = [], {}
    for name in names:
        group = grouped.get(name, [])
        r = pick_run(group, code_digest, across_versions) if group else None
        if r is not None and r.info.status == "FINISHED":
            results.append(result_of(r))
        elif r is not None:
            unfinished[name] = r.info.status
        else:
            unfinished[name] = f"only runs of other code ({group[0].info.status})" if group else "no run"
    return sort_results(results), unfinished


def sort_results(results: list[TrialResult]) -> list[TrialResult]:
    return sorted(results, key=lambda t: (length_key(t.length), t.fold, t.seed))


def _sweep_runs(uri: str, experiment_id: str, sweep_key: str, finished_only: bool) -> list:
    client = MlflowClient(uri)
    status = " and attributes.status = 'FINISHED'" if finished_only else ""
    return Backoff().call(lambda: client.search_runs([experiment_id], filter_string=(
        f"tags.`{SWEEP_KEY_TAG}` = {mlflow_quote(sweep_key)}{status}"),
        max_results=50_000, order_by=["attributes.start_time DESC"]), "reading the sweep's runs")


def sweep_results(uri: str, experiment_id: str, sweep_key: str, names: list[str], code_digest: str,
                  across_versions: bool = False) -> tuple[list[TrialResult], dict[str, str]]:
    """The results of a sweep's trials ``names`` and the names without a FINISHED run."""
    grouped = group_by_name(_sweep_runs(uri, experiment_id, sweep_key, finished_only=False))
    return pick_results(grouped, names, code_digest, across_versions)


def finished_runs(uri: str, experiment_id: str, sweep_key: str, names: Iterable[str] | None = None,
                  code_digest: str | None = None, across_versions: bool = False) -> list[TrialResult]:
    """The FINISHED runs of a sweep, one per trial name, restricted to ``names`` (an earlier
    invocation of the same sweep may have run other seeds or lengths). With ``code_digest``,
    the run each trial used (``tracking.pick_run``): this code's, or with ``across_versions``
    any code's; a run made by other code is otherwise not this sweep's result."""
    grouped = group_by_name(_sweep_runs(uri, experiment_id, sweep_key, finished_only=True))
    if names is not None:
        wanted = set(names)
        grouped = {k: v for k, v in grouped.items() if k in wanted}
    if code_digest is None:
        return sort_results([result_of(g[-1]) for g in grouped.values()])
    return pick_results(grouped, grouped, code_digest, across_versions)[0]


def classes_of(results: list[TrialResult]) -> tuple[str, ...]:
    """The class names the runs were trained on (every run of a sweep has the same)."""
    return next((r.classes for r in results if r.classes), ())


class ConfusionReader:
    """``reader(run_id, test)``: the run's confusion matrix on test set ``test`` (its
    ``confusion_<test>.json``; rows true, columns predicted), or None when it has none (an
    unlabelled test split)."""

    def __init__(self, uri: str):
        self.client = MlflowClient(uri)

    def __call__(self, run_id: str, test: str) -> np.ndarray | None:
        name = f"confusion_{test}.json"
        backoff = Backoff()  # an outage is waited out, never taken for a missing matrix
        listed = backoff.call(lambda: self.client.list_artifacts(run_id), "listing a run's artifacts")
        if name not in {a.path for a in listed}:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            path = backoff.call(lambda: self.client.download_artifacts(run_id, name, tmp), "reading a confusion matrix")
            return np.asarray(json.loads(Path(path).read_text())["matrix"], np.int64)
