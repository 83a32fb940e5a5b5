"""Runs an experiment's trials as one Ray Tune experiment.

Local Ray by default (``address=None`` starts one and shuts it down after); ``address``
connects to a running cluster (``ray up cluster.yaml`` / ``ray start --head``). Actors are
reused across trials, failed trials are retried from their last checkpoint, and each
trial's torch uses the trial's CPU share.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass

import ray
from mlflow import MlflowClient
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator
from rich.console import Console

from orchestrator.experiment import Experiment
from orchestrator.protocols import TrialPlan
from orchestrator import seed_packs
from orchestrator.progress import SweepProgress
from orchestrator.sweep_run import SweepParent, command_line, describe, ensure_experiment
from orchestrator.tune_restore import lost_checkpoints, restart_errored, restorable
from orchestrator.tune_storage import TuneStorage, tune_name as sweep_tune_name
from orchestrator.workdir import Workdir
from trainables.code_version import code_version
from trainables.fit import LeakageError
from trainables.mlflow_filter import mlflow_quote
from trainables.tracking import ERROR_TAG, SWEEP_KEY_TAG
from trainables.tracking_retry import Backoff
from trainables.trainable import train_trial

log = logging.getLogger(__name__)


@dataclass
class SweepOutcome:
    experiment_id: str
    sweep_key: str
    n_trials: int
    n_errored: int
    tune_path: str
    seconds: float
    errors: list[str]  # "TRIAL NAME: last line of the error", one per trial that failed for good
    best: tuple[dict, float] | None = None  # a search's best trial config (dict) and its best validation UF1
    n_reused: int = 0  # trials that reused a FINISHED run instead of training
    n_reused_other_code: int = 0  # ... of which the run was made by other code (reuse_across_versions)
    code: dict | None = None  # the code version every trial ran with (trainables.code_version)
    parent_run_id: str = ""  # the sweep's parent run (orchestrator.sweep_run): the reports go on it

    @property
    def n_trained(self) -> int:
        return self.n_trials - self.n_reused - self.n_errored


class ResourceError(Exception):
    """A trial asks for more than the cluster has; it would wait forever."""


def check_resources(resources: dict[str, float], local: bool) -> None:
    have = ray.cluster_resources()
    short = {k: (v, have.get(k.upper(), 0.0)) for k, v in resources.items() if v > have.get(k.upper(), 0.0)}
    if short and local:
        detail = ", ".join(f"--{k}s-per-trial {v:g} but this machine has {h:g}" for k, (v, h) in short.items())
        raise ResourceError(f"resources: {detail}")
    if short:
        log.warning("the cluster has fewer resources than one trial asks for (%s): trials wait until "
                    "the autoscaler adds nodes", short)


def end_stale_runs(uri: str, experiment_id: str, sweep_key: str) -> int:
    """Runs of this sweep still RUNNING after the sweep ended belong to trials that died
    without a word (a killed worker or node): mark them KILLED so none stays RUNNING."""
    client = MlflowClient(uri)
    backoff = Backoff()  # a tracking server restarting as the sweep ends is waited out, like in the trials
    stale = backoff.call(lambda: client.search_runs([experiment_id], filter_string=(
        f"tags.`{SWEEP_KEY_TAG}` = {mlflow_quote(sweep_key)} and attributes.status = 'RUNNING'"), max_results=10_000),
        "looking up the sweep's runs left RUNNING")
    for run in stale:
        backoff.call(lambda: client.set_tag(run.info.run_id, ERROR_TAG, "trial ended without closing its run"),
                     "tagging a run left RUNNING")
        backoff.call(lambda: client.set_terminated(run.info.run_id, "KILLED"), "closing a run left RUNNING")
    return len(stale)


def init_ray(address: str | None, workdir: Workdir | None) -> bool:
    """Connect to ``address``, or start local Ray with its session files under ``workdir``.
    Returns True if this call started Ray (or connected to a cluster)."""
    if ray.is_initialized():
        return False
    # Ray 2.60 turns token authentication on by default and says so at every start; that is
    # the setting we want, so its notice is not shown (real warnings still are)
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    kwargs = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    address = address or os.environ.get("RAY_ADDRESS") or None  # what Ray itself would read
    if address and address != "local":
        ray.init(address=address, **kwargs)
        return True
    if workdir is None:
        raise ValueError("init_ray: local Ray needs a workdir for its session files")
    tmp = workdir.root / "ray"
    if len(str(tmp)) <= 40:  # Ray's socket paths must stay under the OS limit (~107 chars)
        kwargs["_temp_dir"] = str(tmp)
    # "local": a Ray instance of this sweep's own. Without it ray.init() joins any Ray already
    # running on the machine (another sweep's, whose end would take these trials with it)
    ray.init(address="local", **kwargs)
    return True


@dataclass(frozen=True)
class Search:
    """A hyperparameter search: ``space`` maps trial config paths (``train.lr``) to Tune
    domains; ``samples`` configurations (each grid point that many times); ASHA stops
    trials early on ``metric``, which must be a validation metric."""

    space: dict
    samples: int
    epochs: int  # every configuration's budget (ASHA's max_t)
    seed: int = 0  # the draws of the random domains: the same search draws the same configurations
    metric: str = "val_uf1"
    grace_period: int = 1
    reduction_factor: int = 3

    def __post_init__(self):
        if not (self.metric.startswith("val_") or self.metric.startswith("best_val_")):
            raise LeakageError(f"search metric {self.metric!r}: a search selects and stops on validation metrics only")
        if self.samples < 1:
            raise ValueError(f"samples: at least 1, got {self.samples}")
        if not 1 <= self.grace_period <= self.epochs:
            raise ValueError(f"grace period: between 1 and the epochs ({self.epochs}), got {self.grace_period}")


def run_sweep(exp: Experiment, plans: list[TrialPlan], store_fingerprint: str, workdir: Workdir,
              address: str | None = None, console: Console | None = None, show_progress: bool = True,
              trainable=train_trial, search: Search | None = None,
              reuse_across_versions: bool = False, command: str | None = None,
              packs: list[list[TrialPlan]] | None = None,
              epoch_costs: dict[str, float] | None = None) -> SweepOutcome:
    """Every plan as one Ray Tune experiment (with ``search``: the one plan, ``samples``
    configurations drawn from the space, ASHA on a validation metric).

    The code version (``code_version()``: digest, git commit, library versions) is taken
    once, here, and given to every trial: a FINISHED run is reused only if this code made
    it, or with ``reuse_across_versions`` whatever code made it.

    The sweep's parent run (``sweep_run.SweepParent``, found by the sweep key or made) is
    opened before any trial starts and closed when the sweep ends, however it ends; every
    trial's run is its child. ``command``: the command line it records (``sys.argv``).

    ``packs``: the plans as Tune trials, in the order Tune starts them (default: one each);
    a pack of several plans (seeds that differ in nothing else: ``orchestrator.seed_packs``)
    trains as one model (``trainables.pack_trial``) and each seed keeps its own run. A
    search never packs (each of its trials is its own configuration).

    ``epoch_costs``: each plan's estimated cost of an epoch by name, for the live progress's
    bar and ETA (``execute.epoch_costs``; default: every epoch alike)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # one checkpoint kept per trial forces an experiment snapshot per checkpoint; that is
    # intended here (small checkpoints, few trials per node), so Tune need not warn about it
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    for name in ("mlflow", "alembic", "ray"):
        logging.getLogger(name).setLevel(logging.WARNING)
    packs = packs if packs is not None else seed_packs.pack(plans, 1)
    if search is not None and len(packs) < len(plans):
        raise ValueError("packs: a search's trials are each their own configuration; they do not pack")
    if sorted(p.name for g in packs for p in g) != sorted(p.name for p in plans):
        raise ValueError("packs: every plan exactly once")
    mixed = [seed_packs.pack_name(g) for g in packs if len(seed_packs.groups(g)) != 1]
    if mixed:  # a pack trains with its first member's length, fold and config
        raise ValueError(f"packs: only seeds of one length, fold and config share a pack, not {mixed[:3]}")
    uri = workdir.tracking_uri
    experiment_id = ensure_experiment(uri, exp.name, workdir.artifacts,
                                      describe(exp, store_fingerprint, search=search is not None))
    sweep_key = exp.sweep_key(store_fingerprint) + ("/search" if search else "")
    own = sorted(json.dumps([p.name, p.trial], sort_keys=True) for p in plans if p.trial is not None)
    if own:  # trials with their own configs (a nested search's): the sweep is those configs too
        sweep_key += "/per-trial:" + hashlib.sha256("\n".join(own).encode()).hexdigest()[:12]
    trial_space = exp.trial.to_dict()
    code = code_version()
    tune_kwargs = dict(reuse_actors=True, trial_dirname_creator=lambda t: f"{t.trial_id}")
    n_trials = len(plans)
    if search is not None:
        for path, domain in search.space.items():
            section, key = path.split(".", 1)
            trial_space[section][key] = domain
        tune_kwargs.update(
            num_samples=search.samples, search_alg=BasicVariantGenerator(random_state=search.seed),
            scheduler=ASHAScheduler(time_attr="epoch", metric=search.metric, mode="max",
                                    max_t=search.epochs, grace_period=search.grace_period,
                                    reduction_factor=search.reduction_factor))
        n_trials = search.samples * grid_size(search.space)
    grid_plans = [seed_packs.pack_dict(g) if len(g) > 1 else g[0].to_dict() for g in packs]
    if console is not None and len(grid_plans) < len(plans):
        console.print(f"packed seeds: {len(plans)} trials in {len(grid_plans)} Ray Tune trials of up to "
                      f"{max(map(len, packs))} seeds, each pack trained as one model (every seed keeps its own "
                      f"MLflow run)")
    param_space = {
        "plan": tune.grid_search(grid_plans),
        "trial": trial_space,
        "tracking": {"uri": uri, "experiment_id": experiment_id, "sweep_key": sweep_key, "sweep_name": exp.name,
                     "reuse_across_versions": reuse_across_versions},
        "code": code,
        "params": {**exp.params(), **({"search": "1"} if search else {})},
        "experiment_yaml": exp.to_yaml(),
        "threads": exp.resources.threads,
        "checkpoint_every": exp.checkpoint_every,
        "save_model": exp.save_model and search is None,
        "allow_cpu_for_gpu_trials": exp.resources.allow_cpu_for_gpu_trials,
    }
    resources = {"cpu": exp.resources.cpus_per_trial, "gpu": exp.resources.gpus_per_trial}
    storage = TuneStorage.resolve(workdir.storage, workdir.ray_results)
    # stable per sweep (see tune_storage): a crashed driver's sweep is found and restored
    search_knobs = {k: v for k, v in dataclasses.asdict(search).items() if k != "space"} if search else None
    tune_name = sweep_tune_name(exp.name, {**param_space, "search": search_knobs})
    progress = SweepProgress(n_trials, exp.trial.train.epochs, console=console, enabled=show_progress,
                             packs=len(grid_plans) if len(grid_plans) < len(plans) and search is None else 0,
                             epoch_costs=epoch_costs, trial_cost=seed_packs.TRIAL_OVERHEAD_S if epoch_costs else 0.0,
                             tune_trials=len(grid_plans) if search is None else n_trials)
    parent = SweepParent.open(uri, experiment_id, sweep_key, exp, plans, n_trials, store_fingerprint, code,
                              reuse_across_versions, command or command_line(),
                              exp.name + ("-search" if search else ""))
    # after the Tune name is taken: the parent's id is no part of the sweep's identity (the same
    # sweep finds the same parent anyway, and its interrupted Tune experiment by the same name)
    param_space["tracking"]["parent_run_id"] = parent.run_id
    started = False
    t0 = time.time()
    restored = errors = failure = None
    n_errored = 0
    try:
        started = init_ray(address, workdir)
        check_resources(resources, local=not address)
        if address and storage.is_local and console is not None:
            console.print(f"Tune storage: {storage.path} (a local path: on a cluster of several machines it must "
                          f"be one every node mounts, or an s3:// / gs:// --storage)")
        n_tune = len(grid_plans) if search is None else n_trials  # Tune trials (a pack is one)
        restored = restorable(storage, tune_name, tune.with_resources(trainable, resources), n_tune, [progress])
        if console is not None:
            console.print(f"Tune experiment: {storage.experiment_uri(tune_name)}")
        if restored is not None:
            tuner = restored.tuner
            progress.already_done(restored.n_done_seeds)
            if console is not None:
                console.print(f"restoring the interrupted Tune experiment {restored.uri}: {restored.n_done_seeds} of "
                              f"{n_trials} trials had finished; the others continue from their last checkpoint")
        else:
            tuner = tune.Tuner(
                tune.with_resources(trainable, resources),
                param_space=param_space,
                tune_config=tune.TuneConfig(**tune_kwargs),
                run_config=tune.RunConfig(
                    name=tune_name,
                    **storage.run_config(),
                    failure_config=tune.FailureConfig(max_failures=exp.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    callbacks=[progress],
                    verbose=0,
                ),
            )
        progress.start()
        try:
            grid = tuner.fit()
            if restored is not None and lost_checkpoints(grid):
                # the dead driver's last snapshot named a checkpoint Tune had already replaced (it deletes
                # the old one before the snapshot is written): those trials start again from epoch 1, into
                # their own runs (a FINISHED one is reused), instead of failing
                if console is not None:
                    n_lost, n_errored = lost_checkpoints(grid), sum(r.error is not None for r in grid)
                    other = (f"; the {n_errored - n_lost} other failed trial(s) are retried with them"
                             if n_errored > n_lost else "")
                    console.print(f"{n_lost} trial(s) lost their checkpoint with the dead driver: started again "
                                  f"from epoch 1 (their MLflow runs are continued or reused){other}")
                grid = restart_errored(storage, tune_name, tune.with_resources(trainable, resources), [progress]).fit()
        finally:
            progress.stop()
        errors = [f"{r.config['plan']['name']}: {str(r.error).strip().splitlines()[-1]}"
                  for r in grid if r.error is not None]
        # a failed pack fails its members that trained, not those whose FINISHED run it reused
        n_errored = sum(seeds_of(r.config) - int((r.metrics or {}).get("reused", 0)) for r in grid if r.error is not None)
        reused = [r.metrics for r in grid if r.metrics and r.metrics.get("reused")]
        best = None
        if search is not None:
            ok = [r for r in grid if r.error is None and r.metrics and "best_val_uf1" in r.metrics]
            if ok:
                top = max(ok, key=lambda r: r.metrics["best_val_uf1"])
                best = (top.config["trial"], float(top.metrics["best_val_uf1"]))
    except BaseException as e:
        failure = e
        raise
    finally:
        try:
            end_stale_runs(uri, experiment_id, sweep_key)
        finally:
            try:
                parent.close(None if errors is None else n_errored, failure)
            finally:
                if started:
                    ray.shutdown()
    return SweepOutcome(experiment_id, sweep_key, n_trials, n_errored,
                        storage.experiment_uri(tune_name), time.time() - t0, errors, best,
                        n_reused=sum(int(m["reused"]) for m in reused),
                        n_reused_other_code=sum(int(m.get("reused_other_code", 0)) for m in reused),
                        code=code, parent_run_id=parent.run_id)


def seeds_of(config: dict) -> int:
    """How many seeds a Tune trial trains: a pack's members, else one."""
    return len(config.get("plan", {}).get("members", ())) or 1


def grid_size(space: dict) -> int:
    n = 1
    for domain in space.values():
        if isinstance(domain, dict) and "grid_search" in domain:
            n *= len(domain["grid_search"])
    return n
