"""A pack of seeds as one Ray Tune trial (``--pack-seeds K``): K trials that differ only in
their seed, trained at once as one ``packed_fit.PackedFitter``.

``config["plan"]`` is ``{"name": pack name, "members": [solo plan, ...]}``; everything
else is the solo trial's config (``trainables.trainable``). Each member is its solo trial
in every way that is recorded: its own MLflow child run (found by the same trial key, so a
FINISHED run is reused by a solo sweep and the other way round), its per-epoch metrics,
its checkpoint state (the solo ``FitState``), its test metrics and artifacts from its own
best-validation epoch. Members whose run is FINISHED are reused and not trained again; the
others train together from the pack's last checkpoint, which holds every member's state.

What Tune hears (validation only, like a solo trial): per epoch the members' mean
``val_uf1`` and ``best_val_uf1``, the pack's ``members`` and how many were ``reused``.
"""

from __future__ import annotations

import json
import tempfile
import traceback
from pathlib import Path

import torch
from ray import tune

from trainables.data import load_split, frame_limit
from trainables.fit import FitState
from trainables.model import create_model
from trainables.packed_fit import PackedFitter
from trainables.trainable import (OpenedTrial, _named, _test, open_trial, opening_files, read_state, reused_report,
                                  trial_config, trial_setup, tune_report, validation_only, write_state)

MEMBERS_FILE = "members.json"  # the checkpoint's member names, in its folder order


def pack_label(members: list[dict]) -> str:
    """The ``orch.pack`` tag of each member: the pack's seeds and size."""
    return f"{len(members)} seeds: " + ",".join(str(m["seed"]) for m in members)


def train_pack(config: dict) -> None:
    members = config["plan"]["members"]
    first = trial_config(config, members[0])
    store, labels, classes, code, where = trial_setup(config, members[0])
    tag = {"orch.pack": pack_label(members)}
    opened: list[OpenedTrial] = []
    try:
        for m in members:
            opened.append(open_trial(config, m, store, labels, classes, where, tag))
    except BaseException:  # the runs already (re)opened are not left RUNNING
        for o in opened:
            if not o.run.finished:
                o.run.stopped()
        raise
    reused = [o for o in opened if o.run.finished]
    todo = [o for o in opened if not o.run.finished]
    counts = {"members": len(members), **reused_report(reused, code)}
    epochs = first.train.epochs
    if not todo:
        mean = _mean([validation_only(o.run.final_metrics()) for o in reused])
        tune_report({**mean, "epoch": epochs, **counts})
        return
    try:
        for o in todo:
            o.run.log_files(opening_files(o, config, store, classes))
        _train(todo, store, labels, classes, config, where.device, counts)
    except Exception:
        reason = traceback.format_exc()
        for o in todo:
            if not o.run.finished:
                o.run.fail(reason)
        raise
    except BaseException:  # stopped from outside (Ray stop, Ctrl-C)
        for o in todo:
            if not o.run.finished:
                o.run.stopped()
        raise


def _train(todo: list[OpenedTrial], store, labels, classes, config: dict, device: torch.device,
           counts: dict) -> None:
    loaded: dict[str, object] = {}  # members with the same roles (an ablation's) share their data

    def data(o: OpenedTrial, sel, role: str, what: str):
        key = json.dumps([role, sel.to_dict(), o.trial.data.length], sort_keys=True, default=str)
        if key not in loaded:
            d = o.trial.data
            loaded[key] = load_split(store, sel.rows(store, classes), role, classes, d.length, d.token, d.token_grid,
                                     frame_limit(o.trial.model), what=what).to(device)
        return loaded[key]

    trains = [data(o, o.roles.train, "train", f"train ({o.roles.train.describe()})") for o in todo]
    vals = [data(o, o.roles.validation, "validation", f"validation ({o.roles.validation.describe()})") for o in todo]
    num_classes = len(labels.classes)
    models = []
    for o, train in zip(todo, trains):
        torch.manual_seed(o.trial.seed)  # each member's initialisation: its solo trial's
        models.append(create_model(o.trial.model, train.token_dim, num_classes).to(device))
    states = _restore(todo)
    cfg = todo[0].trial.train
    fitter = PackedFitter(models, cfg, [o.trial.seed for o in todo], num_classes, trains, vals, states)
    every = max(1, int(config.get("checkpoint_every", 5)))
    last = cfg.epochs

    def closing():
        out = []
        for i, o in enumerate(todo):
            one = _MemberView(fitter, i)
            test_data = lambda sel, role, what, o=o: data(o, sel, role, what)  # noqa: E731
            out.append(_test(one, o.roles, labels, test_data, o.trial, bool(config.get("save_model")), o.name))
        return out

    def finish(results) -> None:
        for o, (final, files) in zip(todo, results):
            if not o.run.finished:
                o.run.finish(final, files, step=last)

    for logs in fitter.epochs():
        epoch = logs[0].epoch
        per_member = []
        for o, log, state in zip(todo, logs, fitter.states):
            metrics = {"lr": log.lr, "train_loss": log.train_loss, **_named(log.val, "val_"),
                       "best_val_uf1": state.best_val_uf1}
            o.run.log_epoch(epoch, metrics)
            per_member.append(metrics)
        report = {**_mean(per_member), "epoch": epoch, **counts}
        if epoch < last:
            if epoch % every == 0:
                _report_with_checkpoint(report, todo, fitter.states)
            else:
                tune_report(report)
            continue
        # last epoch: the checkpoint first, then the runs are closed — a crash in between resumes
        # from this checkpoint and only closes the runs still open (below)
        results = closing()
        _report_with_checkpoint(report, todo, fitter.states, final=True)
        finish(results)
    if not all(o.run.finished for o in todo):  # resumed from the checkpoint of the last epoch
        results = closing()
        tune_report({"epoch": last, "best_val_uf1": sum(s.best_val_uf1 for s in fitter.states) / len(todo), **counts})
        finish(results)


class _MemberView:
    """Member ``k`` of a pack as ``trainable._test`` sees a solo ``Fitter``: its state, its
    best-validation model and its training data's token width."""

    def __init__(self, fitter: PackedFitter, k: int):
        self.state = fitter.states[k]
        self.train = fitter.trains[k]
        self._fitter, self._k = fitter, k

    def selected_model(self):
        return self._fitter.selected_model(self._k)


def _mean(rows: list[dict]) -> dict[str, float]:
    keys = set.intersection(*(set(r) for r in rows)) if rows else set()
    return {k: sum(float(r[k]) for r in rows) / len(rows) for k in sorted(keys)}


def _restore(todo: list[OpenedTrial]) -> list[FitState | None]:
    """Each member's state in the pack's last checkpoint (None: it starts at epoch 1), and
    the metrics its run had not taken yet (a tracking outage) given back to its run."""
    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return [None] * len(todo)
    out = []
    with ckpt.as_directory() as d:
        names = json.loads((Path(d) / MEMBERS_FILE).read_text())
        missing = [o.name for o in todo if o.name not in names]
        if missing:  # e.g. a member reused before whose run is gone: the pack starts again, into the same runs
            print(f"the pack's checkpoint has no state for {missing}: every member starts again from epoch 1",
                  flush=True)
            return [None] * len(todo)
        for o in todo:
            out.append(read_state(Path(d) / str(names.index(o.name)), o.run))
    return out


def _report_with_checkpoint(report: dict, todo: list[OpenedTrial], states: list[FitState],
                            final: bool = False) -> None:
    """One checkpoint for the pack: a folder per member with its solo ``FitState`` (and the
    metrics its run could not take during an outage), as ``trainable._report_with_checkpoint``
    (the last epoch's, ``final``: what closing the runs needs, ``trainable.checkpoint_content``)."""
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / MEMBERS_FILE).write_text(json.dumps([o.name for o in todo]))
        for i, (o, state) in enumerate(zip(todo, states)):
            folder = Path(d) / str(i)
            folder.mkdir()
            write_state(folder, state, o.run, final)
        tune_report(report, checkpoint=tune.Checkpoint.from_directory(d))
