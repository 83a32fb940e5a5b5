"""Protocols turn an experiment and its store into trials: per trial a name, a seed, a
frame length, a fold and the roles of the store's clips (``storage.selection.Roles``).

Everything is decided here, in the driver, from the store's subject and split columns, and
deterministically from the seed — so a trial's data is fixed by its name, and what it used
is logged with it (``samples.json``) for anyone to check:

- **ablation**: train / validation / test are whole store splits.
- **split**: the training split's subjects are shuffled by the seed; the first
  ``validation_fraction`` of them (at least one) are the validation subjects, the rest train.
- **loso**: one fold per subject. The seed orders all subjects once; fold *s* takes the
  first ``validation_fraction`` of the *other* subjects in that order as validation, the
  rest as train, and *s* alone as test. The held-out subject is never a validation subject.

Searches (``search_plans``) get train and validation only, no test set at all: the split
protocol's division once, or for LOSO each fold's own training and validation subjects (nested).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from orchestrator.experiment import Experiment
from storage.selection import Roles, Selection, label_map, subjects_of
from storage.store import FrameStore


@dataclass(frozen=True)
class TrialPlan:
    name: str
    seed: int
    length: str
    fold: str  # the held-out subject (loso); "" otherwise
    roles: Roles
    trial: dict | None = None  # this trial's own config (a nested search's choice per fold); None: the experiment's

    def to_dict(self) -> dict:
        out = {"name": self.name, "seed": self.seed, "length": self.length, "fold": self.fold,
               "roles": self.roles.to_dict()}
        if self.trial is not None:
            out["trial"] = self.trial
        return out


class ProtocolError(ValueError):
    """The store cannot serve the protocol (a split missing, too few subjects, ...)."""


def _classes(exp: Experiment, store: FrameStore) -> np.ndarray:
    return label_map(exp.trial.data.label_map, store).class_indices(store)


def _rows_or_fail(store: FrameStore, sel: Selection, classes: np.ndarray, what: str) -> None:
    if not len(sel.rows(store, classes)):
        raise ProtocolError(f"{store.path}: no clips for {what} ({sel.describe()}; the store's splits: "
                            f"{', '.join(sorted(set(store.column('split'))))})")


def _labelled_subjects(store: FrameStore, sel: Selection, classes: np.ndarray, what: str) -> list[str]:
    _rows_or_fail(store, sel, classes, what)
    rows = sel.rows(store, classes)
    unlabelled = rows[classes[rows] < 0]
    if len(unlabelled):
        raise ProtocolError(f"{store.path}: {what} ({sel.describe()}) has {len(unlabelled)} unlabelled clip(s), "
                            f"e.g. {store.column('clip_id')[unlabelled[0]]!r}")
    return subjects_of(store, rows)


def _seed_order(subjects: list[str], seed: int) -> list[str]:
    """All subjects in an order drawn from the seed alone."""
    return [subjects[i] for i in np.random.default_rng([seed, 0x5EED]).permutation(len(subjects))]


def _divide(ordered: list[str], fraction: float) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(train, validation)`` subjects: the first ``fraction`` of ``ordered`` (at least one,
    and never all of them) validate, the rest train."""
    k = min(max(1, int(round(len(ordered) * fraction))), len(ordered) - 1)
    return tuple(sorted(ordered[k:])), tuple(sorted(ordered[:k]))


def plan(exp: Experiment, store: FrameStore) -> list[TrialPlan]:
    """Every trial of ``exp`` on ``store``, in a fixed order."""
    p = exp.protocol
    classes = _classes(exp, store)
    if p.kind == "ablation":
        train, val = Selection((p.train_split,)), Selection((p.validation_split,))
        _labelled_subjects(store, train, classes, "the train split")
        _labelled_subjects(store, val, classes, "the validation split")
        tests = {"test": Selection((p.test_splits[0],))}
        _rows_or_fail(store, tests["test"], classes, "the test split")
        roles = Roles(train, val, tests)
        return [TrialPlan(f"seed{s}-N{n}", s, n, "", roles) for n in exp.lengths for s in exp.seeds]
    if p.kind == "split":
        tests = {t: Selection((t,)) for t in p.test_splits}
        for t, sel in tests.items():
            _rows_or_fail(store, sel, classes, f"test split {t!r}")
        return [TrialPlan(f"seed{s}-N{n}", s, n, "", _split_roles(exp, store, classes, s, tests))
                for n in exp.lengths for s in exp.seeds]
    return _loso(exp, store, classes)


def _split_roles(exp: Experiment, store: FrameStore, classes: np.ndarray, seed: int,
                 tests: dict[str, Selection]) -> Roles:
    p = exp.protocol
    subjects = _labelled_subjects(store, Selection((p.train_split,)), classes, "the train split")
    if len(subjects) < 2:
        raise ProtocolError(f"{store.path}: the train split has {len(subjects)} subject(s); dividing it into "
                            f"subject-disjoint train and validation needs at least 2")
    train, val = _divide(_seed_order(subjects, seed), p.validation_fraction)
    return Roles(Selection((p.train_split,), train), Selection((p.train_split,), val), tests)


def _loso(exp: Experiment, store: FrameStore, classes: np.ndarray) -> list[TrialPlan]:
    p = exp.protocol
    subjects = _labelled_subjects(store, Selection(p.use_splits), classes, "LOSO")
    if len(subjects) < 3:
        raise ProtocolError(f"{store.path}: LOSO needs at least 3 subjects (test, validation, train), "
                            f"found {len(subjects)}")
    out = []
    for s in exp.seeds:
        order = _seed_order(subjects, s)
        for held_out in subjects:
            train, val = _divide([x for x in order if x != held_out], p.validation_fraction)
            roles = Roles(Selection(p.use_splits, train), Selection(p.use_splits, val),
                          {"test": Selection(p.use_splits, (held_out,))})
            out += [TrialPlan(f"fold-{held_out}-seed{s}-N{n}", s, n, held_out, roles) for n in exp.lengths]
    return out


def search_plans(exp: Experiment, store: FrameStore) -> list[TrialPlan]:
    """What the configurations of a search train and are validated on: the protocol's train
    / validation roles for the experiment's first seed and first length, with no test set.

    ``split``: one plan, the train split divided as the split protocol divides it. ``loso``:
    one plan per fold — the fold's own training and validation subjects — so each fold is
    searched without its held-out subject (nested: every fold picks its own configuration)."""
    p = exp.protocol
    seed, length = exp.seeds[0], exp.lengths[0]
    if p.kind == "split":
        roles = _split_roles(exp, store, _classes(exp, store), seed, {})
        return [TrialPlan(f"search-seed{seed}-N{length}", seed, length, "", roles)]
    if p.kind != "loso":
        raise ProtocolError("search: protocol must be 'split' or 'loso'")
    folds = [q for q in _loso(dataclasses.replace(exp, seeds=(seed,), lengths=(length,)), store, _classes(exp, store))]
    return [TrialPlan(f"search-fold-{q.fold}-seed{seed}-N{length}", seed, length, q.fold,
                      Roles(q.roles.train, q.roles.validation)) for q in folds]
