"""One MLflow run per trial, keyed by the trial's identity, written idempotently.

Ray's ``MLflowLoggerCallback`` opens a second run when a trial is retried or restored and
leaves runs RUNNING when the driver dies; this does the logging inside the trial instead:

- the run carries the tag ``orch.trial_key``; a retried or restored trial finds its run by
  that tag and continues it (status back to RUNNING) instead of opening a second one;
- per-epoch metrics carry ``step = epoch``; epochs the run already holds are not logged
  again, so a trial resumed from an older checkpoint does not duplicate history;
- per-epoch metrics are buffered and written in one ``log_batch`` at least every
  ``FLUSH_S`` seconds, before every checkpoint (``flush``; the trainable calls it, so the
  run always holds every epoch up to its trial's last checkpoint and a resumed trial's
  history stays contiguous), and when the run ends — one SQLite transaction costs ~40 ms,
  which per epoch was a tenth of a short trial; search trials (``unbuffered``), which an
  early-stopping scheduler may stop after any epoch, write every epoch at once;
- an exception inside the trial ends the run FAILED before it propagates;
- a run that is already FINISHED is reused as it is (same config + seed gives the same
  metrics, so training it again would only cost time) — but only when the code that made
  it is the code running now: the run carries ``orch.code_digest``
  (``trainables.code_version``), and a trial looks only for runs of its key *and* its code
  digest. A run of the same key made by other code is neither reused nor continued (a
  new run is trained), unless ``reuse_across_versions`` asks for FINISHED runs of any code.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus

from trainables.mlflow_filter import mlflow_quote

TRIAL_KEY_TAG = "orch.trial_key"
SWEEP_KEY_TAG = "orch.sweep_key"
CODE_DIGEST_TAG = "orch.code_digest"  # the code that made the run (trainables.code_version.code_digest)
ERROR_TAG = "orch.error"  # the reason of the last failure, while the run is FAILED
EPOCH_METRIC = "val_uf1"  # logged every epoch; its history says which epochs a run holds
_BATCH = 100  # MLflow's log_batch accepts at most 100 params per call
_METRIC_BATCH = 1000  # ... and at most 1000 metrics
FLUSH_S = 10.0  # buffered epoch metrics are written at least this often


@dataclass(frozen=True)
class TrackingConfig:
    uri: str
    experiment_id: str
    trial_key: str
    sweep_key: str
    run_name: str
    code_digest: str = ""  # the code running this trial; part of its identity
    reuse_across_versions: bool = False  # a FINISHED run of the same key made by other code is reused too


def pick_run(runs: list, code_digest: str, across_versions: bool = False):
    """Which of the runs of one trial key a trial uses: a FINISHED run of this code; else,
    with ``across_versions``, the newest FINISHED run of any code; else the newest run of
    this code (continued); else None (a new run). ``runs`` newest first (MLflow's order)."""
    own = [r for r in runs if r.data.tags.get(CODE_DIGEST_TAG, "") == code_digest]
    finished = [r for r in runs if r.info.status == "FINISHED"]
    return (next((r for r in own if r.info.status == "FINISHED"), None)
            or (finished[0] if across_versions and finished else None)
            or (own[0] if own else None))


class TrialRun:
    def __init__(self, client: MlflowClient, run_id: str, status: str, logged_epochs: int, code_digest: str = ""):
        self.client, self.run_id, self.status = client, run_id, status
        self.logged_epochs = logged_epochs
        self.code_digest = code_digest  # the code that made (or makes) the run
        self._pending: list[Metric] = []  # epoch metrics not written yet (``flush``)
        # write every epoch at once: a search trial can be stopped by its scheduler after any
        # epoch, without an exception reaching the trial (so without a last flush)
        self.unbuffered = False
        self._flushed_at = time.monotonic()

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"

    @classmethod
    def open(cls, cfg: TrackingConfig, params: dict[str, str], tags: dict[str, str] | None = None) -> "TrialRun":
        """Find the trial's run by its key and code digest (``pick_run``), or create it with
        ``params``."""
        client = MlflowClient(cfg.uri)
        found = client.search_runs(
            [cfg.experiment_id], filter_string=f"tags.`{TRIAL_KEY_TAG}` = {mlflow_quote(cfg.trial_key)}",
            max_results=200, order_by=["attributes.start_time DESC"],
        )
        run = pick_run(found, cfg.code_digest, cfg.reuse_across_versions)
        if run is not None:
            run_id, status = run.info.run_id, run.info.status
            made_by = run.data.tags.get(CODE_DIGEST_TAG, "")
            if status != "FINISHED":
                missing = {k: v for k, v in params.items() if k not in run.data.params}
                _log_params(client, run_id, missing)  # a crash between create and log
                if ERROR_TAG in run.data.tags:
                    client.delete_tag(run_id, ERROR_TAG)
                client.update_run(run_id, status="RUNNING")
            logged = client.get_metric_history(run_id, EPOCH_METRIC)
            return cls(client, run_id, status, max((m.step for m in logged), default=0), made_by)
        all_tags = {TRIAL_KEY_TAG: cfg.trial_key, SWEEP_KEY_TAG: cfg.sweep_key, CODE_DIGEST_TAG: cfg.code_digest,
                    **(tags or {})}
        run = client.create_run(cfg.experiment_id, run_name=cfg.run_name, tags=all_tags)
        _log_params(client, run.info.run_id, params)
        return cls(client, run.info.run_id, "RUNNING", 0, cfg.code_digest)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """Buffer one epoch's metrics (written by ``flush``, at the latest ``FLUSH_S`` later)."""
        if epoch <= self.logged_epochs:
            return
        ts = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), ts, epoch) for k, v in metrics.items()]
        self.logged_epochs = epoch
        if self.unbuffered or time.monotonic() - self._flushed_at >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Write the buffered epoch metrics."""
        pending, self._pending = self._pending, []
        for i in range(0, len(pending), _METRIC_BATCH):
            self.client.log_batch(self.run_id, metrics=pending[i: i + _METRIC_BATCH])
        self._flushed_at = time.monotonic()

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
        self._pending += [Metric(k, float(v), ts, 0) for k, v in metrics.items()]
        self.flush()
        self.log_files(files)
        self.client.set_terminated(self.run_id, "FINISHED")
        self.status = "FINISHED"

    def final_metrics(self) -> dict[str, float]:
        return dict(self.client.get_run(self.run_id).data.metrics)

    def fail(self, reason: str) -> None:
        try:
            self.flush()  # the epochs it trained stay visible
            self.client.set_tag(self.run_id, ERROR_TAG, reason[-5000:])
        finally:
            self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.FAILED))
        self.status = "FAILED"


def _log_params(client: MlflowClient, run_id: str, params: dict[str, str]) -> None:
    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), _BATCH):
        client.log_batch(run_id, params=items[i: i + _BATCH])
