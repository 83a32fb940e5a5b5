"""The Ray Tune trainable: a plain function of ``config``.

``config`` = ``{"plan": {name, seed, length, fold, roles}, "trial": TrialConfig dict,
"tracking": {uri, experiment_id, sweep_key, sweep_name, reuse_across_versions, parent_run_id}, "code": the
driver's ``code_version.code_version()`` (digest, project version, git commit, library
versions; a trial's identity includes its digest), "params": experiment-level MLflow
params, "experiment_yaml": the whole experiment, "threads": int, "checkpoint_every": int,
"save_model": bool, "allow_cpu_for_gpu_trials": bool}``. The protocol (orchestrator) decides per trial which clips are
trained on, which select the epoch and which are reported on (``plan.roles``); the trial
only resolves them to rows of the store.

It opens the store (once per process; Ray reuses actors across trials), builds the train
and validation tensors, trains with selection on validation (``packed_fit.solo_fitter``: a
pack of one, so that the seed's numbers are those it gets in any pack), reports *validation* metrics
to Tune once per epoch (a checkpoint directory every ``checkpoint_every`` epochs and at the
end), and keeps its own MLflow run (``tracking.TrialRun``). Test sets are loaded once,
after the last epoch; their metrics go to MLflow only — Tune (its schedulers and
searchers) never receives them (``tune_report`` refuses them). A retried trial resumes from
its last checkpoint and continues the same run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tempfile
import traceback
from pathlib import Path

import numpy as np
import ray
import torch
from mlflow.entities import RunTag
from ray import tune
from torch.utils.serialization import config as torch_save_config

from storage.sampling import length_name, parse_length
from storage.selection import LabelMap, Roles, label_map
from storage.location import is_remote
from storage.store import FrameStore
from storage.store_cache import open_store as open_cached
from trainables import memory
from trainables.code_version import code_version
from trainables.config import TrialConfig
from trainables.confusion_figure import confusion_png
from trainables.data import SplitData, fit_to_store, frame_limit, load_split
from trainables.device import trial_device
from trainables.fit import FitState, Fitter, LeakageError, evaluate
from trainables.model import create_model
from trainables.packed_fit import PackOfOne, solo_fitter
from trainables.run_params import fit_params
from trainables.tracking import TrackingConfig, TrialRun

STATE_FILE = "state.pt"
PENDING_FILE = "tracking_pending.json"  # metrics the tracking store did not take yet (an outage)
MODEL_ARTIFACT = "model/selected.pt"  # the best-validation parameters, for `orch predict`
SAMPLES_ARTIFACT = "samples.json"  # the clip ids of every role
_STORES: dict[str, FrameStore] = {}
PACK_TAG = "orch.pack"  # the pack a seed was trained in ("" for a solo trial): seeds and pack size
RUNTIME_TAGS = ("orch.device", "orch.gpu_ids", "orch.node", "orch.store_cache", PACK_TAG)  # rewritten when a run is continued
_LEASES: dict[str, object] = {}  # remote stores: the cache lease that keeps the node's copy while it is mapped


def open_store(path: str) -> FrameStore:
    """The process's one mapping of a store. A remote store (``s3://``, ``gs://``) is
    fetched once per node into the node's cache (``storage.store_cache``; ``{node}`` in
    ``$ORCH_STORE_CACHE`` is Ray's node id) and mapped from there; its lease is kept with it."""
    if is_remote(path):
        if path not in _STORES:
            node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
            _STORES[path], _LEASES[path] = open_cached(path, node=node, log=lambda m: print(m, flush=True))
        return _STORES[path]
    key = os.path.realpath(path)
    if key not in _STORES:
        _STORES[key] = FrameStore(key)
    return _STORES[key]


def trial_config(config: dict, plan: dict | None = None) -> TrialConfig:
    """The trial's config: the experiment's (or the plan's own), with the plan's seed and length."""
    plan = plan if plan is not None else config["plan"]
    base = TrialConfig.from_dict(plan.get("trial") or config["trial"])  # a plan may carry its own config
    data = dataclasses.replace(base.data, length=parse_length(plan["length"]))
    return dataclasses.replace(base, seed=int(plan["seed"]), data=data)


def trial_key(sweep_key: str, name: str, trial: TrialConfig, roles: dict | None = None) -> str:
    """A trial's identity: its sweep, its name in the protocol (seed, length, fold), a
    digest of its whole config (searches sample several configs under one name) and of its
    roles (which splits and subjects train, validate and test: the protocol draws them in
    the driver, so a change to how they are drawn is a new trial); the store is in the
    sweep key by fingerprint, so its path is left out. The code that computes the numbers
    is the other half of the identity: ``tracking.TrialRun.open`` looks for runs of this key
    made by this code digest (``config["code"]``)."""
    key = f"{sweep_key}/{name}/{trial.digest(exclude=('data.store',))}"
    if roles is not None:
        key += "/" + hashlib.sha256(json.dumps(roles, sort_keys=True).encode()).hexdigest()[:12]
    return key


def tune_report(metrics: dict, checkpoint: tune.Checkpoint | None = None) -> None:
    """The only way results reach Tune (its schedulers, searchers and result grid): test
    metrics are refused, so nothing that selects or stops can see them."""
    leaked = sorted(k for k in metrics if k.startswith("test"))
    if leaked:
        raise LeakageError(f"test metrics {leaked} must not reach Ray Tune (which selects and stops trials)")
    tune.report(metrics, checkpoint=checkpoint)


def validation_only(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith("test")}


@dataclasses.dataclass
class OpenedTrial:
    """One trial (a seed of a pack, or a solo trial) with its MLflow run open: what its
    training needs and where its results go."""

    plan: dict
    trial: TrialConfig
    roles: Roles
    run: TrialRun
    param_files: dict[str, str]  # params too long for MLflow, logged as artifacts

    @property
    def name(self) -> str:
        return self.plan["name"]


def open_trial(config: dict, plan: dict, store: FrameStore, labels: LabelMap, classes: np.ndarray,
               where, extra_tags: dict[str, str] | None = None) -> OpenedTrial:
    """The trial's config resolved on the store, and its run found (continued, reused) or
    created with its params and tags (``tracking.TrialRun.open``)."""
    trial = trial_config(config, plan)
    trial = dataclasses.replace(trial, model=fit_to_store(trial.model, store, [trial.data.length]))  # the driver did
    roles = Roles.from_dict(plan["roles"])
    t = config["tracking"]
    code = config.get("code") or code_version()  # the driver's (computed once there); standalone: this process's
    length = length_name(trial.data.length)
    tracking = TrackingConfig(
        uri=t["uri"], experiment_id=t["experiment_id"], sweep_key=t["sweep_key"],
        trial_key=trial_key(t["sweep_key"], plan["name"], trial, plan["roles"]), run_name=plan["name"],
        code_digest=code["digest"], reuse_across_versions=bool(t.get("reuse_across_versions")),
        parent_run_id=t.get("parent_run_id", ""),
    )
    params = {**config.get("params", {}), **trial.params(), "length": length, "fold": plan.get("fold", ""),
              "data.store_fingerprint": store.fingerprint, "data.classes": ",".join(labels.classes),
              "runtime.device": where.device.type, "runtime.threads": str(torch.get_num_threads()),
              **{f"code.{k}": v for k, v in code.items()}, **_role_params(roles)}
    params, param_files = fit_params(params)  # values too long for MLflow: artifacts, named by their param
    tags = {"orch.sweep": t.get("sweep_name", ""), "orch.seed": str(trial.seed), "orch.length": length,
            # where it runs now (tags: a trial resumed on another node says so)
            "orch.device": where.description, "orch.gpu_ids": ",".join(where.gpu_ids),
            "orch.node": ray.get_runtime_context().get_node_id(), PACK_TAG: "", **(extra_tags or {})}
    if trial.data.store in _LEASES:  # a remote store: where this node's copy is (its cache says which node)
        tags["orch.store_cache"] = str(_LEASES[trial.data.store].path)
    if plan.get("fold"):
        tags["orch.fold"] = plan["fold"]
    run = TrialRun.open(tracking, params, tags=tags)
    if not run.finished and run.continued:  # continued (retried, restored, moved, packed or not): where it runs now
        run.backoff.call(lambda: run.client.log_batch(run.run_id, tags=[RunTag(k, tags[k]) for k in RUNTIME_TAGS
                                                                        if k in tags]), "tagging where the run is now")
    run.unbuffered = config.get("params", {}).get("search") == "1"  # ASHA may stop it after any epoch
    return OpenedTrial(plan, trial, roles, run, param_files)


def reused_report(opened: list[OpenedTrial], code: dict) -> dict:
    """What Tune hears of trials whose FINISHED run is reused: how many, and how many of
    those other code made."""
    return {"reused": len(opened), "reused_other_code": sum(o.run.code_digest != code["digest"] for o in opened)}


def opening_files(o: OpenedTrial, config: dict, store: FrameStore, classes: np.ndarray) -> dict[str, str]:
    """The artifacts a run gets when its training starts."""
    return {**o.param_files, "experiment.yaml": config.get("experiment_yaml", ""),
            SAMPLES_ARTIFACT: json.dumps(o.roles.sample_ids(store, classes), indent=1)}


def trial_setup(config: dict, plan: dict):
    """What a trial (or a pack, from its first member) needs before its runs open: its torch
    threads, the store (once per process), the label map and class of every clip, the
    driver's code version, and the device Ray assigned (it sets CUDA_VISIBLE_DEVICES) — or a
    clear error before any run is opened."""
    torch.set_num_threads(int(config.get("threads", 1)))
    trial = trial_config(config, plan)
    store = open_store(trial.data.store)
    labels = label_map(trial.data.label_map, store)
    code = config.get("code") or code_version()  # the driver's (computed once there); standalone: this process's
    where = trial_device(ray.get_gpu_ids(), bool(config.get("allow_cpu_for_gpu_trials")))
    return store, labels, labels.class_indices(store), code, where


def train_trial(config: dict) -> None:
    """One trial — or, when its plan has ``members`` (``--pack-seeds``), a pack of seeds
    trained as one model (``trainables.pack_trial``). However it ends, the worker's freed
    memory goes back to the system before its next trial (``memory.release``)."""
    try:
        if "members" in config["plan"]:
            from trainables.pack_trial import train_pack

            return train_pack(config)
        return _train_solo(config)
    finally:
        memory.release()


def _train_solo(config: dict) -> None:
    plan = config["plan"]
    store, labels, classes, code, where = trial_setup(config, plan)
    opened = open_trial(config, plan, store, labels, classes, where)
    trial, roles, run = opened.trial, opened.roles, opened.run
    if run.finished:  # same identity, same config (and code, unless asked otherwise): its metrics
        tune_report({**validation_only(run.final_metrics()), "epoch": trial.train.epochs, **reused_report([opened], code)})
        return
    try:
        run.log_files(opening_files(opened, config, store, classes))
        _train(trial, roles, labels, classes, store, run, config, where.device)
    except Exception:
        run.fail(traceback.format_exc())
        raise
    except BaseException:  # stopped from outside (Ray stop, an early-stopping scheduler, Ctrl-C)
        run.stopped()
        raise


def _role_params(roles: Roles) -> dict[str, str]:
    """What each role is, as MLflow params: its store splits and subjects (a list too long
    for a param becomes an artifact: ``run_params.fit_params``; the clip ids themselves are
    the run's samples.json)."""
    out = {}
    named = {"train": roles.train, "validation": roles.validation, **{f"test.{k}": v for k, v in roles.tests.items()}}
    for role, sel in named.items():
        out[f"split.{role}"] = ",".join(sel.splits) or "*"
        if sel.subjects is not None:
            out[f"subjects.{role}"] = ",".join(sel.subjects)
    return out


def _train(trial: TrialConfig, roles: Roles, labels: LabelMap, classes: np.ndarray, store: FrameStore,
           run: TrialRun, config: dict, device: torch.device) -> None:
    d = trial.data

    def data(sel, role: str, what: str) -> SplitData:
        return load_split(store, sel.rows(store, classes), role, classes, d.length, d.token, d.token_grid,
                          frame_limit(trial.model), what=what).to(device)

    train = data(roles.train, "train", f"train ({roles.train.describe()})")
    val = data(roles.validation, "validation", f"validation ({roles.validation.describe()})")
    num_classes = len(labels.classes)
    torch.manual_seed(trial.seed)
    model = create_model(trial.model, train.token_dim, num_classes).to(device)
    state = _restore(run)
    fitter = solo_fitter(model, trial.train, trial.seed, num_classes, train, val, state)
    every = max(1, int(config.get("checkpoint_every", 5)))
    last = trial.train.epochs
    closing = lambda: _test(fitter, roles, labels, data, trial, bool(config.get("save_model")),  # noqa: E731
                            config["plan"]["name"])
    for log in fitter.epochs():
        metrics = {"lr": log.lr, "train_loss": log.train_loss, **_named(log.val, "val_"),
                   "best_val_uf1": fitter.state.best_val_uf1}
        run.log_epoch(log.epoch, metrics)
        report = {**metrics, "epoch": log.epoch, "best_epoch": fitter.state.best_epoch}
        if log.epoch < last:
            if log.epoch % every == 0:
                _report_with_checkpoint(report, fitter.state, run)
            else:
                tune_report(report)
            continue
        # last epoch: the checkpoint first, then the run is closed — a crash in between
        # resumes from this checkpoint and only closes the run (below)
        final, files = closing()
        _report_with_checkpoint(report, fitter.state, run, final=True)
        run.finish(final, files, step=last)
    if not run.finished:  # resumed from the checkpoint of the last epoch
        final, files = closing()
        tune_report({"epoch": last, "best_epoch": fitter.state.best_epoch, "best_val_uf1": fitter.state.best_val_uf1})
        run.finish(final, files, step=last)


def _named(scores, prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": v for k, v in scores.as_dict().items() if k != "n"}


def metric_prefix(name: str) -> str:
    """Metric prefix of a test set: ``test`` -> ``test_``, ``test_B`` -> ``test_B_``,
    ``heldout`` -> ``test_heldout_`` (every test metric starts with ``test``)."""
    return f"{name}_" if name.startswith("test") else f"test_{name}_"


def _test(fitter: "Fitter | PackOfOne", roles: Roles, labels: LabelMap, data, trial: TrialConfig, save_model: bool,
          run_name: str = ""):
    """The selected (best-validation) parameters on each test set — the only time test data
    is loaded. Returns the final metrics and the run's closing artifacts (per test set its
    predictions, and its confusion matrix as JSON and as a figure with the class names)."""
    final = {"best_epoch": fitter.state.best_epoch, "best_val_uf1": fitter.state.best_val_uf1}
    files: dict[str, str | bytes] = {}
    selected = fitter.selected_model()
    names = labels.classes
    for name, sel in roles.tests.items():
        test = data(sel, "test", f"test {name!r} ({sel.describe()})")
        ev = evaluate(selected, test, len(names))
        truth = test.labels.cpu().tolist()
        rows = [f"{c},{names[t] if t >= 0 else ''},{names[p]}" for c, t, p in zip(test.clip_ids, truth, ev.predictions)]
        files[f"predictions_{name}.csv"] = "\n".join(["clip_id,true,predicted", *rows]) + "\n"
        if ev.scores is not None:
            final.update(_named(ev.scores, metric_prefix(name)))
            files[f"confusion_{name}.json"] = json.dumps(
                {"classes": list(names), "matrix": ev.confusion.tolist(),
                 "rows": "true class", "columns": "predicted class"}, indent=1)
            files[f"confusion_{name}.png"] = confusion_png(ev.confusion, list(names), f"{run_name}: {name}".strip(": "))
    if save_model:
        buf = io.BytesIO()
        torch.save({"state_dict": fitter.state.best_model, "trial": trial.to_dict(),
                    "token_dim": fitter.train.token_dim, "classes": list(names),
                    "best_epoch": fitter.state.best_epoch}, buf)
        files[MODEL_ARTIFACT] = buf.getvalue()
    return final, files


def _restore(run: TrialRun | None = None) -> FitState | None:
    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        return read_state(Path(d), run)


def read_state(folder: Path, run: TrialRun | None = None) -> FitState:
    """A checkpoint folder's ``FitState``; the metrics its run had not taken yet (taken
    during a tracking outage) go back to ``run``."""
    if run is not None and (folder / PENDING_FILE).exists():
        run.restore_pending(json.loads((folder / PENDING_FILE).read_text()))
    return FitState(**torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True))


def checkpoint_content(state: FitState, final: bool = False) -> dict:
    """What a checkpoint saves of ``state``. The last epoch's (``final``) only lets a trial
    resumed from it close its run (``_test``: the selected parameters): the best epoch's
    parameters and the counters, not the last epoch's weights nor Adam's state (3/4 of the
    checkpoint: ~11 MB -> ~3 MB for the paper's model)."""
    saved = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    if final:
        saved.update(model={}, optimizer={})
    return saved


def _report_with_checkpoint(report: dict, state: FitState, run: TrialRun, final: bool = False) -> None:
    with tempfile.TemporaryDirectory() as d:
        write_state(Path(d), state, run, final)
        tune_report(report, checkpoint=tune.Checkpoint.from_directory(d))


def write_state(folder: Path, state: FitState, run: TrialRun, final: bool = False) -> None:
    """``state`` into a checkpoint folder. The run holds every epoch up to the checkpoint (a
    resumed trial's history stays contiguous), or, while the tracking store is unreachable,
    the folder holds those it could not take."""
    written = run.flush()
    # no zip CRC-32 over the ~11 MB (torch's documented switch): 40 -> 24 ms a checkpoint
    with torch_save_config.patch("save.compute_crc32", False):
        torch.save(checkpoint_content(state, final), folder / STATE_FILE)
    if not written:
        (folder / PENDING_FILE).write_text(json.dumps(run.pending_records()))
