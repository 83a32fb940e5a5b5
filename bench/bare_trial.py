"""The bare Ray Tune function trial of ``bench/trial_overhead.py``: the same training as
``trainables.trainable.train_trial`` (same splits, model, epochs, test evaluation), and
nothing else. A module of its own so that Ray pickles it by reference (its workers import it:
the benchmark puts ``bench/`` on their ``PYTHONPATH``)."""

from __future__ import annotations

import cProfile
import dataclasses
import json
import os
import time
import uuid

import torch
from ray import tune

from storage.selection import Roles, label_map
from storage.store import FrameStore
from trainables.data import fit_to_store, frame_limit, load_split
from trainables.fit import evaluate
from trainables.model import create_model
from trainables.packed_fit import solo_fitter
from trainables.trainable import trial_config


def bare_trial(config: dict) -> None:
    """The same training as ``train_trial``, and nothing else."""
    torch.set_num_threads(int(config["threads"]))
    trial = trial_config(config)
    store = FrameStore(config["store"])
    trial = dataclasses.replace(trial, model=fit_to_store(trial.model, store, [trial.data.length]))
    labels = label_map(trial.data.label_map, store)
    classes = labels.class_indices(store)
    roles = Roles.from_dict(config["plan"]["roles"])
    d = trial.data

    def data(sel, role):
        return load_split(store, sel.rows(store, classes), role, classes, d.length, d.token, d.token_grid,
                          frame_limit(trial.model))

    train, val = data(roles.train, "train"), data(roles.validation, "validation")
    torch.manual_seed(trial.seed)
    model = create_model(trial.model, train.token_dim, len(labels.classes))
    fitter = solo_fitter(model, trial.train, trial.seed, len(labels.classes), train, val)  # as the orch trial
    for log in fitter.epochs():
        if log.epoch == trial.train.epochs:
            selected = fitter.selected_model()
            for sel in roles.tests.values():
                evaluate(selected, data(sel, "test"), len(labels.classes))
        tune.report({"val_uf1": log.val.uf1, "train_loss": log.train_loss, "epoch": log.epoch})


def timed(fn, log: str, profile: str = ""):
    """``fn`` as a trial that appends its start and end (``time.time()``) to the JSON lines
    file ``log``; with ``profile`` (a folder) it also runs under cProfile (one file per trial)."""
    def trial(config: dict) -> None:
        prof = cProfile.Profile() if profile else None
        start = time.time()
        if prof:
            prof.enable()
        try:
            fn(config)
        finally:
            if prof:
                prof.disable()
                prof.dump_stats(os.path.join(profile, f"trial-{config['plan']['name']}-{uuid.uuid4().hex[:6]}.prof"))
            with open(log, "a") as f:
                f.write(json.dumps({"name": config["plan"]["name"], "start": start, "end": time.time()}) + "\n")
    return trial
