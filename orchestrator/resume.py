"""``orch resume NAME``: the command that started experiment NAME, run again after its
driver died, with the settings it used (``resume_index``) unless told otherwise.

Each of its sweeps then restores its own interrupted Tune experiment (``runner.run_sweep``
finds it by its stable name): interrupted trials continue from their last checkpoint and
continue the MLflow runs the dead driver left RUNNING; finished trials are not run again.
The reports are the original command's.

If the code that computes the numbers (``trainables.code_version``'s digest) changed since
the command started, nothing it made is restored or continued: the sweep's identity holds
the code digest, so its Tune experiments are not this code's, and a trial looks only for
runs of its own code. The trials train again with this code (from epoch 1), the old code's
runs stay in MLflow (FINISHED ones reused only with ``--reuse-across-versions``), and the
runs the dead driver left RUNNING are marked KILLED when the sweep ends. This is said
before anything runs.
"""

from __future__ import annotations

import dataclasses
import datetime
import os

from rich.console import Console

from orchestrator import execute as ex
from orchestrator import resume_index
from orchestrator.tune_storage import StorageError, TuneStorage
from orchestrator.workdir import Workdir
from trainables.code_version import code_version


def resume(name: str, wd: Workdir, console: Console, address: str | None = None, tracking_uri: str | None = None,
           storage: str | None = None, show_progress: bool = True) -> int:
    """Run experiment ``name`` of ``wd`` again, restoring what its dead driver left.
    Settings: the option given, else the environment (``RAY_ADDRESS``,
    ``MLFLOW_TRACKING_URI``), else what the command used. Returns the exit status."""
    try:
        entry = resume_index.load(wd, name)
    except resume_index.ResumeIndexError as e:
        raise ex.CommandError(str(e)) from None
    try:
        with resume_index.driver_lock(wd, name):
            return _resume(entry, name, wd, console, address, tracking_uri, storage, show_progress)
    except resume_index.DriverBusy as e:
        raise ex.CommandError(str(e)) from None


def _resume(entry, name: str, wd: Workdir, console: Console, address: str | None, tracking_uri: str | None,
            storage: str | None, show_progress: bool) -> int:
    address = address or os.environ.get("RAY_ADDRESS") or entry.address
    tracking = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or entry.tracking_uri
    wd = dataclasses.replace(wd, tracking=tracking)  # the driver's, handed to every trial in its config
    try:
        store = TuneStorage.resolve(storage or entry.storage or None, wd.ray_results)
    except StorageError as e:
        raise ex.CommandError(str(e)) from None
    wd = dataclasses.replace(wd, storage=store.uri)
    when = datetime.datetime.fromtimestamp(entry.started).strftime("%Y-%m-%d %H:%M:%S")
    state = "it finished: its runs are reused" if entry.finished else "it did not finish"
    console.print(f"resuming experiment {name!r} (started {when}; {state}): {' '.join(entry.command) or '?'}")
    console.print(f"ray: {address or 'local'}; tracking: {tracking}; tune storage: {store.uri}")
    now = code_version()["digest"]
    if entry.code_digest and entry.code_digest != now:
        console.print(f"[yellow]the code changed since {name!r} started[/] (code digest {entry.code_digest}, now "
                      f"{now}): nothing the old code made is restored or continued; its trials train again with "
                      f"this code, from epoch 1. The old code's runs stay in MLflow (FINISHED ones reused only with "
                      f"--reuse-across-versions); runs its driver left RUNNING are marked KILLED at the end.")
    resume_index.record(wd, entry.experiment, address, store.uri, entry.reuse_across_versions, now,
                        command=entry.command)
    code = ex.execute(entry.experiment, wd, console, address=address, show_progress=show_progress,
                      reuse_across_versions=entry.reuse_across_versions)
    resume_index.mark_finished(wd, name)
    return code
