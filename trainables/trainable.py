"""The Ray Tune trainable: a plain function of ``config``.

``config`` = ``{"seed": int, "length": "4" | ... | "all", "trial": TrialConfig dict,
"tracking": {uri, experiment_id, sweep_key, sweep_name}, "threads": int,
"checkpoint_every": int}``.

It opens the store (once per process; Ray reuses actors across trials), builds the three
splits' tensors, trains with selection on validation, reports once per epoch (a checkpoint
directory every ``checkpoint_every`` epochs and at the end), and keeps its own MLflow run
(``tracking.TrialRun``). A retried trial resumes from its last checkpoint and continues the
same run.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import traceback
from pathlib import Path

import torch
from ray import tune

from storage.sampling import length_name, parse_length
from storage.store import FrameStore
from trainables.config import TrialConfig
from trainables.data import SplitData, load_split
from trainables.fit import FitState, Fitter, evaluate
from trainables.model import create_model
from trainables.tracking import TrackingConfig, TrialRun

STATE_FILE = "state.pt"
_STORES: dict[str, FrameStore] = {}


def open_store(path: str) -> FrameStore:
    """The process's one mapping of a store."""
    key = os.path.realpath(path)
    if key not in _STORES:
        _STORES[key] = FrameStore(key)
    return _STORES[key]


def trial_config(config: dict) -> TrialConfig:
    base = TrialConfig.from_dict(config["trial"])
    data = dataclasses.replace(base.data, length=parse_length(config["length"]))
    return dataclasses.replace(base, seed=int(config["seed"]), data=data)


def trial_key(sweep_key: str, seed: int, length: int | None) -> str:
    return f"{sweep_key}/seed={seed}/N={length_name(length)}"


def train_trial(config: dict) -> None:
    trial = trial_config(config)
    torch.set_num_threads(int(config.get("threads", 1)))
    store = open_store(trial.data.store)
    t = config["tracking"]
    length = length_name(trial.data.length)
    tracking = TrackingConfig(
        uri=t["uri"], experiment_id=t["experiment_id"], sweep_key=t["sweep_key"],
        trial_key=trial_key(t["sweep_key"], trial.seed, trial.data.length),
        run_name=f"seed{trial.seed}-N{length}",
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # Ray sets CUDA_VISIBLE_DEVICES
    params = {**trial.params(), "length": length, "data.store_fingerprint": store.fingerprint,
              "runtime.device": device.type, "runtime.threads": str(torch.get_num_threads()),
              "split.train": trial.data.train_split, "split.validation": trial.data.val_split,
              "split.test": trial.data.test_split}
    run = TrialRun.open(tracking, params, tags={"orch.sweep": t.get("sweep_name", ""),
                                                "orch.seed": str(trial.seed), "orch.length": length})
    if run.finished:  # same identity, same config: its metrics are what training would give
        tune.report({**run.final_metrics(), "epoch": trial.train.epochs, "reused": 1})
        return
    try:
        _train(trial, store, run, config, device)
    except Exception:
        run.fail(traceback.format_exc())
        raise
    except BaseException:  # stopped from outside (Ray stop, Ctrl-C): not a failure of the trial
        run.client.set_terminated(run.run_id, "KILLED")
        raise


def _train(trial: TrialConfig, store: FrameStore, run: TrialRun, config: dict, device: torch.device) -> None:
    d = trial.data
    split = lambda name: load_split(store, name, d.length, d.token, d.token_grid, trial.model.max_frames)  # noqa: E731
    train, val = split(d.train_split).to(device), split(d.val_split).to(device)
    num_classes = len(store.labels)
    torch.manual_seed(trial.seed)
    model = create_model(trial.model, train.token_dim, num_classes).to(device)
    state = _restore()
    fitter = Fitter(model, trial.train, trial.seed, num_classes, train, val, state)
    every = max(1, int(config.get("checkpoint_every", 5)))
    last = trial.train.epochs
    for log in fitter.epochs():
        metrics = {"lr": log.lr, "train_loss": log.train_loss, **_named(log.val, "val_")}
        run.log_epoch(log.epoch, metrics)
        report = {**metrics, "epoch": log.epoch, "best_epoch": fitter.state.best_epoch,
                  "best_val_uf1": fitter.state.best_val_uf1}
        if log.epoch < last:
            if log.epoch % every == 0:
                _report_with_checkpoint(report, fitter.state)
            else:
                tune.report(report)
            continue
        # last epoch: the checkpoint first, then the run is closed — a crash in between
        # resumes from this checkpoint and only closes the run (below)
        final, closing = _test(fitter, split(d.test_split).to(device), store)
        _report_with_checkpoint({**report, **final}, fitter.state)
        run.finish(final, *closing)
    if not run.finished:  # resumed from the checkpoint of the last epoch
        final, closing = _test(fitter, split(d.test_split).to(device), store)
        tune.report({"epoch": last, **final})
        run.finish(final, *closing)


def _named(scores, prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": v for k, v in scores.as_dict().items() if k != "n"}


def _test(fitter: Fitter, test: SplitData, store: FrameStore):
    """The selected (best-validation) parameters on the test split — the only time the test
    split is looked at. Returns the final metrics and what ``TrialRun.finish`` stores."""
    ev = evaluate(fitter.selected_model(), test, len(store.labels))
    final = {**_named(ev.scores, "test_"), "best_epoch": fitter.state.best_epoch,
             "best_val_uf1": fitter.state.best_val_uf1}
    preds = [(c, int(t), int(p)) for c, t, p in zip(test.clip_ids, test.labels.cpu().tolist(), ev.predictions)]
    return final, (ev.confusion, store.labels, preds)


def _restore() -> FitState | None:
    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        return FitState(**torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=False))


def _report_with_checkpoint(report: dict, state: FitState) -> None:
    with tempfile.TemporaryDirectory() as d:
        torch.save({f.name: getattr(state, f.name) for f in dataclasses.fields(state)}, Path(d) / STATE_FILE)
        tune.report(report, checkpoint=tune.Checkpoint.from_directory(d))
