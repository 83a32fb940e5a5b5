"""One MLflow run per trial, keyed by the trial's identity, written idempotently.

Ray's ``MLflowLoggerCallback`` opens a second run when a trial is retried or restored and
leaves runs RUNNING when the driver dies; this does the logging inside the trial instead:

- the run carries the tag ``orch.trial_key``; a retried or restored trial finds its run by
  that tag and continues it (status back to RUNNING) instead of opening a second one;
- per-epoch metrics carry ``step = epoch``; epochs the run already holds are not logged
  again, so a trial resumed from an older checkpoint does not duplicate history;
- an exception inside the trial ends the run FAILED before it propagates;
- a run that is already FINISHED is reused as it is (same config + seed gives the same
  metrics, so training it again would only cost time).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus

TRIAL_KEY_TAG = "orch.trial_key"
SWEEP_KEY_TAG = "orch.sweep_key"
ERROR_TAG = "orch.error"  # the reason of the last failure, while the run is FAILED
EPOCH_METRIC = "val_uf1"  # logged every epoch; its history says which epochs a run holds
_BATCH = 100  # MLflow's log_batch accepts at most 100 params per call


@dataclass(frozen=True)
class TrackingConfig:
    uri: str
    experiment_id: str
    trial_key: str
    sweep_key: str
    run_name: str


class TrialRun:
    def __init__(self, client: MlflowClient, run_id: str, status: str, logged_epochs: int):
        self.client, self.run_id, self.status = client, run_id, status
        self.logged_epochs = logged_epochs

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"

    @classmethod
    def open(cls, cfg: TrackingConfig, params: dict[str, str], tags: dict[str, str] | None = None) -> "TrialRun":
        """Find the trial's run by its key, or create it with ``params``."""
        client = MlflowClient(cfg.uri)
        found = client.search_runs(
            [cfg.experiment_id], filter_string=f"tags.`{TRIAL_KEY_TAG}` = '{cfg.trial_key}'",
            max_results=50,
        )
        if found:
            # a FINISHED run wins; otherwise the newest (search order) is continued
            run = next((r for r in found if r.info.status == "FINISHED"), found[0])
            run_id, status = run.info.run_id, run.info.status
            if status != "FINISHED":
                missing = {k: v for k, v in params.items() if k not in run.data.params}
                _log_params(client, run_id, missing)  # a crash between create and log
                if ERROR_TAG in run.data.tags:
                    client.delete_tag(run_id, ERROR_TAG)
                client.update_run(run_id, status="RUNNING")
            logged = client.get_metric_history(run_id, EPOCH_METRIC)
            return cls(client, run_id, status, max((m.step for m in logged), default=0))
        all_tags = {TRIAL_KEY_TAG: cfg.trial_key, SWEEP_KEY_TAG: cfg.sweep_key, **(tags or {})}
        run = client.create_run(cfg.experiment_id, run_name=cfg.run_name, tags=all_tags)
        _log_params(client, run.info.run_id, params)
        return cls(client, run.info.run_id, "RUNNING", 0)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if epoch <= self.logged_epochs:
            return
        ts = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), ts, epoch) for k, v in metrics.items()])
        self.logged_epochs = epoch

    def log_files(self, files: dict[str, str | bytes]) -> None:
        """Artifacts by relative path -> content (written again if already there: idempotent)."""
        if not files:
            return
        with tempfile.TemporaryDirectory() as tmp:
            for rel, content in files.items():
                p = Path(tmp) / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(content.encode() if isinstance(content, str) else content)
            self.client.log_artifacts(self.run_id, tmp)

    def finish(self, metrics: dict[str, float], files: dict[str, str | bytes]) -> None:
        """Final metrics (no step) and artifacts (e.g. the test confusion matrix, per-clip
        predictions), then status FINISHED — the artifacts first, so a FINISHED run has them."""
        ts = int(time.time() * 1000)
        if metrics:
            self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), ts, 0) for k, v in metrics.items()])
        self.log_files(files)
        self.client.set_terminated(self.run_id, "FINISHED")
        self.status = "FINISHED"

    def final_metrics(self) -> dict[str, float]:
        return dict(self.client.get_run(self.run_id).data.metrics)

    def fail(self, reason: str) -> None:
        try:
            self.client.set_tag(self.run_id, ERROR_TAG, reason[-5000:])
        finally:
            self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.FAILED))
        self.status = "FAILED"


def _log_params(client: MlflowClient, run_id: str, params: dict[str, str]) -> None:
    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), _BATCH):
        client.log_batch(run_id, params=items[i: i + _BATCH])
