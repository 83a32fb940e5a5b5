"""One MLflow run per trial, keyed by the trial's identity, written idempotently.

Ray's ``MLflowLoggerCallback`` opens a second run when a trial is retried or restored and
leaves runs RUNNING when the driver dies; this does the logging inside the trial instead:

- the run carries the tag ``orch.trial_key``; a retried or restored trial finds its run by
  that tag and continues it (status back to RUNNING) instead of opening a second one;
- the run is a child of its sweep's parent run (``orchestrator.sweep_run``): made with
  ``mlflow.parentRunId`` and ``orch.run_kind = trial``; a run found again (continued, or
  FINISHED and reused) is given the current parent if it names another, or none;
- per-epoch metrics carry ``step = epoch``; epochs the run already holds are not logged
  again, so a trial resumed from an older checkpoint does not duplicate history;
- per-epoch metrics are buffered and written in one ``log_batch`` at least every
  ``FLUSH_S`` seconds, before every checkpoint (``flush``; the trainable calls it, so the
  run always holds every epoch up to its trial's last checkpoint and a resumed trial's
  history stays contiguous), and when the run ends — one SQLite transaction costs ~40 ms,
  which per epoch was a tenth of a short trial; search trials (``unbuffered``), which an
  early-stopping scheduler may stop after any epoch, write every epoch at once;
- an exception inside the trial ends the run FAILED before it propagates;
- tracking outages lose nothing (``tracking_retry``): every call retries with backoff; a
  flush while the store is unreachable keeps its metrics (the trainable puts them in the
  checkpoint it takes next, ``pending_records``) and training goes on; they are sent again
  unchanged at the next flush — MLflow's stores keep one row per (key, step, timestamp,
  value), so a batch that landed although its response was lost is not doubled — and the
  run's end (``finish``) waits for the store, up to ``$ORCH_TRACKING_PATIENCE_S`` (600 s);
- a run that is already FINISHED is reused as it is (same config + seed gives the same
  metrics, so training it again would only cost time) — but only when the code that made
  it is the code running now: the run carries ``orch.code_digest``
  (``trainables.code_version``), and a trial looks only for runs of its key *and* its code
  digest. A run of the same key made by other code is neither reused nor continued (a
  new run is trained), unless ``reuse_across_versions`` asks for FINISHED runs of any code.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag

from trainables.mlflow_filter import mlflow_quote
from trainables.tracking_retry import Backoff, TrackingUnavailable, is_transient, quick_http_retries

log = logging.getLogger(__name__)

TRIAL_KEY_TAG = "orch.trial_key"
SWEEP_KEY_TAG = "orch.sweep_key"
CODE_DIGEST_TAG = "orch.code_digest"  # the code that made the run (trainables.code_version.code_digest)
ERROR_TAG = "orch.error"  # the reason of the last failure, while the run is FAILED
OPEN_ID_TAG = "orch.open_id"  # which TrialRun.open created the run (a lost response is found by it)
RUN_KIND_TAG = "orch.run_kind"  # "sweep" on a sweep's parent run, "trial" on each trial's (child) run
SWEEP_PARENT_TAG = "orch.sweep_parent"  # on a parent run: the key of its sweep (not SWEEP_KEY_TAG: filters on that see trials only)
PARENT_RUN_TAG = "mlflow.parentRunId"  # MLflow's own: a child run's parent (the UI nests it)
EPOCH_METRIC = "val_uf1"  # logged every epoch; its history says which epochs a run holds
_BATCH = 100  # MLflow's log_batch accepts at most 100 params per call
_METRIC_BATCH = 1000  # ... and at most 1000 metrics
FLUSH_S = float(os.environ.get("ORCH_TRACKING_FLUSH_S") or 10.0)  # buffered epoch metrics are written at least this often
FAIL_PATIENCE_S = 30.0  # how long a failing trial waits to record its failure


@dataclass(frozen=True)
class TrackingConfig:
    uri: str
    experiment_id: str
    trial_key: str
    sweep_key: str
    run_name: str
    code_digest: str = ""  # the code running this trial; part of its identity
    reuse_across_versions: bool = False  # a FINISHED run of the same key made by other code is reused too
    parent_run_id: str = ""  # the sweep's parent run (orchestrator.sweep_run): the trial's run is its child


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
    def __init__(self, client: MlflowClient, run_id: str, status: str, logged_epochs: int, code_digest: str = "",
                 backoff: Backoff | None = None):
        self.client, self.run_id, self.status = client, run_id, status
        self.logged_epochs = logged_epochs  # epochs logged or buffered (``_pending``)
        self.code_digest = code_digest  # the code that made (or makes) the run
        self._pending: list[Metric] = []  # metrics not written yet (``flush``), as they will be sent
        # write every epoch at once: a search trial can be stopped by its scheduler after any
        # epoch, without an exception reaching the trial (so without a last flush)
        self.unbuffered = False
        self._flushed_at = time.monotonic()
        self.backoff = backoff or Backoff()
        self.continued = False  # found, not created: its tags are those of an earlier attempt

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"

    @classmethod
    def open(cls, cfg: TrackingConfig, params: dict[str, str], tags: dict[str, str] | None = None,
             client: MlflowClient | None = None, backoff: Backoff | None = None) -> "TrialRun":
        """Find the trial's run by its key and code digest (``pick_run``), or create it with
        ``params``. Every call waits out tracking outages (``Backoff``); a create whose
        response was lost is found by its ``orch.open_id`` by the search that follows it, so
        it never makes a second run (and copies made by a retried request are deleted)."""
        quick_http_retries(cfg.uri)
        client = client or MlflowClient(cfg.uri)
        backoff = backoff or Backoff()
        open_id = uuid.uuid4().hex
        creating = Backoff(backoff.patience, backoff._sleep, backoff._clock)  # its own clock: a search that
        while True:  # succeeds between failing creates must not reset the creates' patience
            found = backoff.call(lambda: client.search_runs(
                [cfg.experiment_id], filter_string=f"tags.`{TRIAL_KEY_TAG}` = {mlflow_quote(cfg.trial_key)}",
                max_results=200, order_by=["attributes.start_time DESC"]), "looking up the trial's run")
            made = [r for r in found if r.data.tags.get(OPEN_ID_TAG) == open_id]
            if made:  # this call created it (once, or more often by a retried request)
                for extra in made[:-1]:
                    backoff.call(lambda: client.delete_run(extra.info.run_id), "deleting a duplicate run")
                run_id = made[-1].info.run_id  # the first made (newest first)
                backoff.call(lambda: _log_params(client, run_id, params), "logging the run's params")
                return cls(client, run_id, "RUNNING", 0, cfg.code_digest, backoff)
            run = pick_run(found, cfg.code_digest, cfg.reuse_across_versions)
            if run is not None:
                _adopt(client, run, cfg.parent_run_id, backoff)
                return cls._continue(client, run, params, backoff)
            all_tags = {TRIAL_KEY_TAG: cfg.trial_key, SWEEP_KEY_TAG: cfg.sweep_key, CODE_DIGEST_TAG: cfg.code_digest,
                        RUN_KIND_TAG: "trial", **({PARENT_RUN_TAG: cfg.parent_run_id} if cfg.parent_run_id else {}),
                        **(tags or {}), OPEN_ID_TAG: open_id}
            try:
                client.create_run(cfg.experiment_id, run_name=cfg.run_name, tags=all_tags)
            except Exception as e:  # noqa: BLE001 - the search above tells whether it landed
                creating.wait(e, "creating the trial's run")

    @classmethod
    def _continue(cls, client: MlflowClient, run, params: dict[str, str], backoff: Backoff) -> "TrialRun":
        run_id, status = run.info.run_id, run.info.status
        made_by = run.data.tags.get(CODE_DIGEST_TAG, "")
        if status != "FINISHED":
            missing = {k: v for k, v in params.items() if k not in run.data.params}
            backoff.call(lambda: _log_params(client, run_id, missing), "logging the run's params")  # a crash between create and log
            if ERROR_TAG in run.data.tags:
                backoff.call(lambda: client.delete_tag(run_id, ERROR_TAG), "clearing the run's error")
            backoff.call(lambda: client.update_run(run_id, status="RUNNING"), "reopening the run")
        logged = backoff.call(lambda: client.get_metric_history(run_id, EPOCH_METRIC), "reading the run's epochs")
        out = cls(client, run_id, status, max((m.step for m in logged), default=0), made_by, backoff)
        out.continued = True
        return out

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """Buffer one epoch's metrics (written by ``flush``, at the latest ``FLUSH_S`` later)."""
        if epoch <= self.logged_epochs:
            return
        ts = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), ts, epoch) for k, v in metrics.items()]
        self.logged_epochs = epoch
        if self.unbuffered or time.monotonic() - self._flushed_at >= FLUSH_S:
            self.flush()

    def flush(self, wait: bool = False) -> bool:
        """Write the buffered metrics; True if none is left. While the tracking store is
        unreachable they stay buffered (for the next flush; ``pending_records`` for a
        checkpoint) and training goes on — unless ``wait``: then it waits the outage out
        (``Backoff``). Sent again as they were (same key, step, timestamp and value), so a
        batch that landed although its response was lost is not stored twice (MLflow's
        stores keep one row per such metric)."""
        while self._pending:
            batch = self._pending[:_METRIC_BATCH]
            try:
                self.client.log_batch(self.run_id, metrics=batch)
            except Exception as e:  # noqa: BLE001
                if wait:
                    self.backoff.wait(e, f"logging {len(self._pending)} metrics")
                    continue
                if not is_transient(e):
                    raise
                self._flushed_at = time.monotonic()  # next try at the next flush
                log.warning("tracking store unreachable: %d metrics kept for the next flush (%s)",
                            len(self._pending), str(e).splitlines()[0][:200])
                return False
            self.backoff.ok()
            del self._pending[:len(batch)]
        self._flushed_at = time.monotonic()
        return True

    def pending_records(self) -> list[list]:
        """The metrics not written yet, as JSON-able ``[key, value, timestamp, step]``."""
        return [[m.key, m.value, m.timestamp, m.step] for m in self._pending]

    def restore_pending(self, records: list[list]) -> None:
        """Take back metrics a checkpoint kept (``pending_records``): they are sent with
        their original timestamps, so any that had landed are not stored twice."""
        have = {(m.key, m.step, m.timestamp) for m in self._pending}
        for key, value, ts, step in records:
            if (key, int(step), int(ts)) not in have:
                self._pending.append(Metric(key, float(value), int(ts), int(step)))
                if key == EPOCH_METRIC:
                    self.logged_epochs = max(self.logged_epochs, int(step))

    def log_files(self, files: dict[str, str | bytes]) -> None:
        """Artifacts by relative path -> content (written again if already there: idempotent)."""
        if not files:
            return
        with tempfile.TemporaryDirectory() as tmp:
            for rel, content in files.items():
                p = Path(tmp) / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(content.encode() if isinstance(content, str) else content)
            self.backoff.call(lambda: self.client.log_artifacts(self.run_id, tmp), "logging the run's artifacts")

    def finish(self, metrics: dict[str, float], files: dict[str, str | bytes], step: int = 0) -> None:
        """Final metrics (at ``step``: the trainable gives its last epoch, so a final metric
        that is also logged per epoch, like ``best_val_uf1``, ends its history instead of
        starting it again at step 0) and artifacts (e.g. the test confusion matrix, per-clip
        predictions), then status FINISHED — the artifacts first, so a FINISHED run has them.
        Waits out a tracking outage (every buffered epoch is delivered first); fails with
        ``TrackingUnavailable`` once it outlasts the patience."""
        ts = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), ts, step) for k, v in metrics.items()]
        self.flush(wait=True)
        self.log_files(files)
        self.backoff.call(lambda: self.client.set_terminated(self.run_id, "FINISHED"), "closing the run")
        self.status = "FINISHED"

    def final_metrics(self) -> dict[str, float]:
        return dict(self.backoff.call(lambda: self.client.get_run(self.run_id), "reading the run").data.metrics)

    def stopped(self) -> None:
        """End the run KILLED: the trial was stopped from outside (Ray, an early-stopping
        scheduler, Ctrl-C). Its buffered epochs are delivered first; both briefly retried
        (``FAIL_PATIENCE_S``): if the tracking store stays down, the driver's
        ``end_stale_runs`` closes the run later, and the stop is what propagates."""
        brief = Backoff(min(self.backoff.patience, FAIL_PATIENCE_S))
        saved, self.backoff = self.backoff, brief
        try:
            self.flush(wait=True)  # the epochs it trained stay in its history (ASHA stops before any checkpoint)
            brief.call(lambda: self.client.set_terminated(self.run_id, "KILLED"), "closing the stopped run")
            self.status = "KILLED"
        except Exception as e:  # noqa: BLE001
            log.warning("could not close the stopped trial's run: %s", e)
        finally:
            self.backoff = saved

    def fail(self, reason: str) -> None:
        """End the run FAILED with ``reason`` — briefly retried: if the tracking store is
        down, the driver's ``end_stale_runs`` closes the run later (the trial's own error is
        what propagates)."""
        brief = Backoff(min(self.backoff.patience, FAIL_PATIENCE_S))
        try:
            self.flush()  # the epochs it trained stay visible
            brief.call(lambda: self.client.set_tag(self.run_id, ERROR_TAG, reason[-5000:]), "recording the error")
        except Exception as e:  # noqa: BLE001
            log.warning("could not record the trial's error in its run: %s", e)
        finally:
            try:
                brief.call(lambda: self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.FAILED)),
                           "closing the run FAILED")
            except TrackingUnavailable as e:
                log.warning("could not close the run FAILED: %s", e)
        self.status = "FAILED"


def _adopt(client: MlflowClient, run, parent_run_id: str, backoff: Backoff) -> None:
    """A run found again (continued, or FINISHED and reused) is a child of the current
    sweep's parent: a run made before parents existed, or under another parent, is moved."""
    tags = {RUN_KIND_TAG: "trial", **({PARENT_RUN_TAG: parent_run_id} if parent_run_id else {})}
    changed = [RunTag(k, v) for k, v in tags.items() if run.data.tags.get(k) != v]
    if changed:
        backoff.call(lambda: client.log_batch(run.info.run_id, tags=changed), "making the run a child of its sweep")


def _log_params(client: MlflowClient, run_id: str, params: dict[str, str]) -> None:
    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), _BATCH):
        client.log_batch(run_id, params=items[i: i + _BATCH])
