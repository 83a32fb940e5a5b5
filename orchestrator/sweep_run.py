"""A sweep's place in MLflow: its experiment and its parent run.

**The experiment** (one per orch experiment name; it holds all its sweeps) is made by the
driver before any trial starts, with ``mlflow.experimentKind = custom_model_development``
(MLflow's mark of a training experiment; MLflow 3.17's UI itself opens on the side its
browser last used, GenAI by default, so ``orch ui`` prints each experiment's runs page with
``?workflowType=machine_learning``) and a description (``mlflow.note.content``): what the
experiment is and where its table is. Both are set again on an experiment that exists (one
made before they were, or by hand), unless its description is one a user wrote. A
*deleted* experiment is never restored behind the user's back: ``DeletedExperiment`` says
how to restore it, use another name, or purge it.

**The parent run** (one per sweep key: ``Experiment.sweep_key`` of the store, plus
``/search`` for a search) is found by its tag ``orch.sweep_parent`` or made, and every
trial's run is its child (``mlflow.parentRunId``, set by ``trainables.tracking``). A re-run
of the sweep reuses it (reopened RUNNING while the sweep runs); the sweep's end closes it
FINISHED if every trial finished, else FAILED with ``orch.n_failed`` (KILLED when the
driver was interrupted). A driver killed outright leaves it RUNNING until the next
invocation (or ``orch resume``) reopens and closes it, like its children.

What the parent holds, and which invocation it describes:

- params — only what the sweep key fixes, so they never need to change (MLflow params are
  immutable): the experiment's params (``Experiment.params()``) and ``data.store_fingerprint``;
- tags — the *latest* invocation: ``orch.run_kind = sweep``, ``orch.sweep_parent``,
  ``orch.code_digest``, ``orch.reuse_across_versions``, ``orch.n_trials`` (what changes
  between invocations of one sweep: a narrower ``--seeds``, new code), ``code.*`` (the
  code version, as the trials' params name it), ``orch.n_failed`` once it ended;
- artifacts — the latest invocation too, rewritten by each: ``experiment.yaml``,
  ``trials.json`` (its trials: name, seed, length, fold), ``command.txt`` (its command line).

One invocation may run several sweeps of one key: a nested LOSO search searches each fold
apart, all under the key ``.../search``. They share the parent, and its trial count, trials
and failures add up over those sweeps (the calls given the same ``Experiment`` object), not
over earlier invocations.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Param, RunTag
from mlflow.exceptions import MlflowException

from orchestrator.experiment import Experiment
from orchestrator.protocols import TrialPlan
from orchestrator.tracking_db import seed_sqlite
from trainables.mlflow_filter import mlflow_quote
from trainables.run_params import fit_params
from trainables.tracking import (CODE_DIGEST_TAG, ERROR_TAG, OPEN_ID_TAG, RUN_KIND_TAG, SWEEP_PARENT_TAG,
                                 TrialRun)
from trainables.tracking_retry import Backoff

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"  # MLflow's mark of a training (not GenAI) experiment
NOTE_TAG = "mlflow.note.content"  # the experiment's description in the UI
ORCH_NOTE = "**orch experiment"  # how the descriptions orch writes begin (one a user wrote instead is kept)
REUSE_TAG = "orch.reuse_across_versions"
N_TRIALS_TAG = "orch.n_trials"
N_FAILED_TAG = "orch.n_failed"
INVOKED_TAG = "orch.invoked_at_ms"  # when a command last ran the sweep (a reopened run keeps its start_time)
TRIALS_ARTIFACT = "trials.json"
COMMAND_ARTIFACT = "command.txt"
EXPERIMENT_ARTIFACT = "experiment.yaml"


_SUMS: dict[str, dict] = {}  # parent run id -> what the sweeps of its latest invocation add up to


class DeletedExperiment(Exception):
    """The MLflow experiment of this name is deleted; the message says what to do."""


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed (``orch ...`` when it was the orch CLI), quoted for a shell."""
    argv = list(sys.argv if argv is None else argv)
    if argv and Path(argv[0]).name in ("orch", "cli.py"):
        argv[0] = "orch"
    return shlex.join(argv)


def describe(exp: Experiment, store_fingerprint: str, search: bool = False) -> str:
    """The experiment's description (Markdown): what it is and where its table is."""
    p, t = exp.protocol, exp.trial
    store = exp.store or f"the built-in benchmark {exp.benchmark!r}"
    what = f"hyperparameter search (then the best configuration runs as experiment `{exp.name}-best`), " \
        if search else ""
    parent = f"`{exp.name}-search`" if search else f"`{exp.name}`"
    table = f"{exp.name}-best" if search else exp.name  # a search has no test set: its table is the best's
    where = f"experiment `{table}`'s parent run" if search else "the parent run"
    return (f"**orch experiment `{exp.name}`**: {what}protocol **{p.kind}** ({p.roles_text()}); "
            f"{len(exp.seeds)} seeds x {len(exp.lengths)} lengths ({', '.join(exp.lengths)}); "
            f"{t.train.epochs} epochs; store {store} (fingerprint {store_fingerprint[:12]}).\n\n"
            f"Each sweep is a parent run (named {parent}) whose children are its trials. The table: "
            f"`orch table {table}`, or the `reports/` artifacts of {where}.")


def ensure_experiment(uri: str, name: str, artifact_root: Path, description: str = "") -> str:
    """The MLflow experiment's id, created (artifacts under the workdir) if new, tagged
    (kind, description) either way; a deleted one is refused (``DeletedExperiment``).

    Done once in the driver, before any trial starts, so that trials never race to create
    it (or to migrate a new SQLite database). A new SQLite database starts as a copy of
    MLflow's empty one (``tracking_db``: seconds of migrations saved)."""
    seed_sqlite(uri)
    client = MlflowClient(uri)
    backoff = Backoff()
    tags = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, **({NOTE_TAG: description} if description else {})}
    exp = backoff.call(lambda: client.get_experiment_by_name(name), "looking up the MLflow experiment")
    if exp is None:
        artifact_location = None
        if uri.startswith("sqlite:") or "://" not in uri:
            artifact_location = (artifact_root / name).resolve().as_uri()
        try:
            return client.create_experiment(name, artifact_location=artifact_location, tags=tags)
        except MlflowException as e:  # another driver (or a retried request) made it meanwhile
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return ensure_experiment(uri, name, artifact_root, description)
    if exp.lifecycle_stage == "deleted":
        raise DeletedExperiment(
            f"the MLflow experiment {name!r} (id {exp.experiment_id}) at {uri} is deleted; orch does not restore it "
            f"behind your back. Restore it (`MLFLOW_TRACKING_URI='{uri}' mlflow experiments restore "
            f"--experiment-id {exp.experiment_id}`, or in the MLflow UI), run under another name "
            f"(--experiment NAME), or purge it for good (`mlflow gc --backend-store-uri '{uri}' "
            f"--experiment-ids {exp.experiment_id}`) so the name can be used again")
    if not exp.tags.get(NOTE_TAG, ORCH_NOTE).startswith(ORCH_NOTE):  # the user's own description stays
        tags.pop(NOTE_TAG, None)
    for key, value in tags.items():
        if exp.tags.get(key) != value:
            backoff.call(lambda: client.set_experiment_tag(exp.experiment_id, key, value), "tagging the experiment")
    return exp.experiment_id


def trials(plans: list[TrialPlan]) -> list[dict]:
    """The parent's ``trials.json`` entries."""
    return [{"name": p.name, "seed": p.seed, "length": p.length, "fold": p.fold} for p in plans]


@dataclass
class SweepParent:
    """A sweep's parent run (``open`` finds or makes it; ``close`` ends it)."""

    client: MlflowClient
    run_id: str
    backoff: Backoff

    @classmethod
    def open(cls, uri: str, experiment_id: str, sweep_key: str, exp: Experiment, plans: list[TrialPlan],
             n_trials: int, store_fingerprint: str, code: dict, reuse_across_versions: bool, command: str,
             run_name: str) -> "SweepParent":
        """The sweep's parent, found by its sweep key (the oldest, if ever several) or
        created (a create whose response was lost is found by its ``orch.open_id``), then
        reopened RUNNING and given this invocation's tags and artifacts."""
        client, backoff = MlflowClient(uri), Backoff()
        open_id = uuid.uuid4().hex
        params, files = fit_params({**exp.params(), "data.store_fingerprint": store_fingerprint})
        while True:
            found = backoff.call(lambda: client.search_runs(
                [experiment_id], filter_string=f"tags.`{SWEEP_PARENT_TAG}` = {mlflow_quote(sweep_key)}",
                max_results=100, order_by=["attributes.start_time ASC"]), "looking up the sweep's parent run")
            if found:
                run = found[0]
                for extra in found[1:]:  # copies a retried create of this call made
                    if extra.data.tags.get(OPEN_ID_TAG) == open_id:
                        backoff.call(lambda: client.delete_run(extra.info.run_id), "deleting a duplicate parent")
                break
            try:
                client.create_run(experiment_id, run_name=run_name, tags={
                    RUN_KIND_TAG: "sweep", SWEEP_PARENT_TAG: sweep_key, OPEN_ID_TAG: open_id})
            except Exception as e:  # noqa: BLE001 - the search above tells whether it landed
                backoff.wait(e, "creating the sweep's parent run")
        parent = cls(client, run.info.run_id, backoff)
        here = _SUMS.get(parent.run_id)
        if here is None or here["exp"] is not exp:  # a new invocation (the same one passes the same object)
            here = _SUMS[parent.run_id] = {"exp": exp, "trials": [], "n_trials": 0, "n_failed": 0}
        here["trials"] += trials(plans)
        here["n_trials"] += n_trials
        missing = {k: v for k, v in params.items() if k not in run.data.params}
        tags = {RUN_KIND_TAG: "sweep", CODE_DIGEST_TAG: code.get("digest", ""), INVOKED_TAG: str(int(time.time() * 1000)),
                REUSE_TAG: "true" if reuse_across_versions else "false", N_TRIALS_TAG: str(here["n_trials"]),
                **{f"code.{k}": str(v) for k, v in code.items()}}
        backoff.call(lambda: client.log_batch(parent.run_id, params=_params(missing),
                                              tags=[RunTag(k, v) for k, v in tags.items()]), "tagging the parent run")
        for stale in (N_FAILED_TAG, ERROR_TAG):
            if stale in run.data.tags:
                backoff.call(lambda: client.delete_tag(parent.run_id, stale), "clearing the parent's last outcome")
        if run.info.status != "RUNNING":
            backoff.call(lambda: client.update_run(parent.run_id, status="RUNNING"), "reopening the parent run")
        parent.log_files({**files, EXPERIMENT_ARTIFACT: exp.to_yaml(),
                          TRIALS_ARTIFACT: json.dumps(here["trials"], indent=1), COMMAND_ARTIFACT: command + "\n"})
        return parent

    def log_files(self, files: dict[str, str | bytes]) -> None:
        """Artifacts by relative path -> content (e.g. ``reports/table4.md``)."""
        TrialRun(self.client, self.run_id, "RUNNING", 0, backoff=self.backoff).log_files(files)

    def close(self, n_failed: int | None, error: BaseException | None = None) -> None:
        """FINISHED if no trial failed; FAILED with ``orch.n_failed`` if some did, or with
        ``orch.error`` if the sweep itself failed (``n_failed`` None); KILLED if it was
        interrupted (Ctrl-C)."""
        c, b = self.client, self.backoff
        if n_failed is not None and self.run_id in _SUMS:  # with this invocation's earlier sweeps of it
            _SUMS[self.run_id]["n_failed"] += n_failed
            n_failed = _SUMS[self.run_id]["n_failed"]
        if error is not None and not isinstance(error, Exception):
            status = "KILLED"
        elif error is not None or n_failed is None:
            status = "FAILED"
            b.call(lambda: c.set_tag(self.run_id, ERROR_TAG, f"{type(error).__name__}: {error}"[-5000:]),
                   "recording the sweep's error")
        else:
            status = "FAILED" if n_failed else "FINISHED"
        if n_failed is not None:
            b.call(lambda: c.set_tag(self.run_id, N_FAILED_TAG, str(n_failed)), "recording the failed trials")
        b.call(lambda: c.set_terminated(self.run_id, status), "closing the parent run")


def _params(params: dict[str, str]) -> list[Param]:
    return [Param(k, v) for k, v in params.items()]
