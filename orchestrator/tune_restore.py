"""Restoring a sweep's interrupted Tune experiment (a driver that died mid-sweep).

``restorable`` looks for the sweep's Tune experiment in its storage (by its stable name,
``tune_storage.tune_name``). If one is there and not every trial of it terminated — some
were pending, running or errored when its driver died — it comes back as a ``Tuner``
restored with ``resume_errored=True``: every unfinished trial continues from its last
checkpoint with the config Tune saved for it (the name holds a digest of that config, so
it is the config this command would give), and each trial finds its MLflow run by its key
(``trainables.tracking.TrialRun.open``) and continues it. A Tune experiment whose trials
all terminated is removed instead (MLflow holds its results), and the sweep starts afresh
under the same name: a re-run after completion reuses the FINISHED runs as before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ray import tune

from orchestrator.tune_storage import TuneStorage

log = logging.getLogger(__name__)


class RestoreError(Exception):
    """The sweep's Tune experiment is there but cannot be restored; the message names it."""


@dataclass(frozen=True)
class Restored:
    tuner: tune.Tuner
    uri: str  # where the experiment is, for messages
    n_done: int  # trials the dead driver had seen terminate without error (not run again)
    n_done_seeds: int = 0  # ... the seeds they trained (a pack of K counts K)


def restorable(storage: TuneStorage, name: str, trainable, n_trials: int, callbacks: list) -> Restored | None:
    """The sweep's interrupted Tune experiment ``name``, restored, or None (nothing to
    restore: start afresh). ``callbacks`` replace the ones the dead driver pickled (the
    live progress display is this driver's)."""
    path = storage.experiment_path(name)
    if not tune.Tuner.can_restore(path, storage_filesystem=storage.filesystem):
        return None
    # trials that had reported nothing yet have no result file; Tune warns of each, which is expected here
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    try:
        tuner = tune.Tuner.restore(path, trainable, resume_errored=True, storage_filesystem=storage.filesystem)
    except Exception as e:  # another trainable, a damaged tuner.pkl: the user decides, nothing is deleted
        raise RestoreError(f"{storage.experiment_uri(name)}: this sweep's Tune experiment cannot be restored "
                           f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}); "
                           f"remove it to run the sweep afresh (its finished runs are reused)") from None
    try:
        grid = tuner.get_results()
        known, done = len(grid), grid.num_terminated
        done_seeds = sum(len(t.config.get("plan", {}).get("members", ())) or 1
                         for t in grid._experiment_analysis.trials if t.status == "TERMINATED")
    except RuntimeError:  # the driver died before it saved any trial state: nothing to continue
        known, done, done_seeds = 0, 0, 0
    if known == 0 or done >= n_trials:
        log.info("Tune experiment %s: %s; removed, the sweep runs afresh", path,
                 "finished (its runs are reused)" if known else "no trial saved")
        storage.remove_experiment(name)
        return None
    inner = getattr(tuner, "_local_tuner", None)  # None only through a Ray client (ray://), which orch does not use
    if inner is not None:
        inner.get_run_config().callbacks = list(callbacks)
    return Restored(tuner, storage.experiment_uri(name), done, done_seeds)


# Ray Tune's error for a restored trial whose checkpoint is gone (ray/tune/trainable/trainable.py)
_GONE = "does not exist on storage anymore"


def lost_checkpoints(grid) -> int:
    """Trials of a restored run that failed because the checkpoint the dead driver's
    snapshot named was gone: with one checkpoint kept, Tune deletes the previous one when a
    new one arrives, before its next snapshot; a driver killed in between leaves a snapshot
    naming the deleted one."""
    return sum(1 for r in grid if r.error is not None and _GONE in str(r.error))


def restart_errored(storage: TuneStorage, name: str, trainable, callbacks: list) -> tune.Tuner:
    """The experiment restored again, its errored trials restarted without a checkpoint."""
    tuner = tune.Tuner.restore(storage.experiment_path(name), trainable, restart_errored=True,
                               storage_filesystem=storage.filesystem)
    inner = getattr(tuner, "_local_tuner", None)
    if inner is not None:
        inner.get_run_config().callbacks = list(callbacks)
    return tuner
