"""The store checks and subject draws the protocols share: a role's clips exist and are
labelled, all subjects ordered by a seed, an ordered list divided into train and validation."""

from __future__ import annotations

import numpy as np

from orchestrator.experiment import Experiment
from orchestrator.protocols.base import ProtocolError
from storage.selection import Selection, label_map, subjects_of
from storage.store import FrameStore


def classes_of(exp: Experiment, store: FrameStore) -> np.ndarray:
    return label_map(exp.trial.data.label_map, store).class_indices(store)


def rows_or_fail(store: FrameStore, sel: Selection, classes: np.ndarray, what: str) -> None:
    if not len(sel.rows(store, classes)):
        raise ProtocolError(f"{store.path}: no clips for {what} ({sel.describe()}; the store's splits: "
                            f"{', '.join(sorted(set(store.column('split'))))})")


def labelled_subjects(store: FrameStore, sel: Selection, classes: np.ndarray, what: str) -> list[str]:
    rows_or_fail(store, sel, classes, what)
    rows = sel.rows(store, classes)
    unlabelled = rows[classes[rows] < 0]
    if len(unlabelled):
        raise ProtocolError(f"{store.path}: {what} ({sel.describe()}) has {len(unlabelled)} unlabelled clip(s), "
                            f"e.g. {store.column('clip_id')[unlabelled[0]]!r}")
    return subjects_of(store, rows)


def seed_order(subjects: list[str], seed: int) -> list[str]:
    """All subjects in an order drawn from the seed alone."""
    return [subjects[i] for i in np.random.default_rng([seed, 0x5EED]).permutation(len(subjects))]


def divide(ordered: list[str], fraction: float) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(train, validation)`` subjects: the first ``fraction`` of ``ordered`` (at least one,
    and never all of them) validate, the rest train."""
    k = min(max(1, int(round(len(ordered) * fraction))), len(ordered) - 1)
    return tuple(sorted(ordered[k:])), tuple(sorted(ordered[:k]))
