"""Which clips of a store play which role in a trial, and which classes they are scored in.

- ``LabelMap``: the store's label vocabulary mapped to the classes of a task, by name:
  ``store`` (the store's own labels, in order), ``casme3-7`` (CAS(ME)^3's 7 emotions) and
  ``casme3-3`` (negative / positive / surprise; ``others`` is left out of the 3-class
  task, as in the CAS(ME)^3 protocol). A clip whose label the map leaves out takes part in
  no role; an unlabelled clip (competition test rows) stays unlabelled.
- ``Selection``: the clips of some splits (all splits when empty), optionally only those of
  some subjects.
- ``Roles``: the selections a trial trains on (``train``), chooses its epoch on
  (``validation``) and reports on (``tests``, by name). Protocols build them in the
  driver from the store's subject and split columns; a trial only resolves them to rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from storage.sources import casme3
from storage.store import UNLABELLED, FrameStore

LEFT_OUT = -2  # class index of a clip whose label the task does not use


@dataclass(frozen=True)
class LabelMap:
    name: str
    classes: tuple[str, ...]
    mapping: dict[str, str | None]  # store label -> class (None: left out of the task)

    def class_indices(self, store: FrameStore) -> np.ndarray:
        """Per clip of ``store``: its class index, ``UNLABELLED`` (-1) or ``LEFT_OUT`` (-2)."""
        unknown = sorted(set(store.labels) - set(self.mapping))
        if unknown:
            raise ValueError(f"data.label_map: {self.name!r} does not know the label(s) {unknown} of store "
                             f"{store.path} (it maps {sorted(self.mapping)})")
        lut = np.array([LEFT_OUT if self.mapping[lbl] is None else self.classes.index(self.mapping[lbl])
                        for lbl in store.labels] + [UNLABELLED], np.int64)
        return lut[store.column("label_index").astype(np.int64)]  # index -1 picks the last entry: unlabelled


def _casme3_7() -> dict[str, str | None]:
    return {e: e for e in casme3.EMOTIONS_7}


LABEL_MAPS = {
    "casme3-7": lambda labels: LabelMap("casme3-7", casme3.EMOTIONS_7, _casme3_7()),
    "casme3-3": lambda labels: LabelMap("casme3-3", casme3.CLASSES_3, dict(casme3.TO_3_CLASSES)),
    "store": lambda labels: LabelMap("store", tuple(labels), {lbl: lbl for lbl in labels}),
}


def label_map(name: str, store: FrameStore) -> LabelMap:
    try:
        make = LABEL_MAPS[name]
    except KeyError:
        raise ValueError(f"data.label_map: unknown label map {name!r}; known: {sorted(LABEL_MAPS)}") from None
    return make(store.labels)


@dataclass(frozen=True)
class Selection:
    splits: tuple[str, ...] = ()  # store splits; empty: every split
    subjects: tuple[str, ...] | None = None  # None: every subject of those splits

    def rows(self, store: FrameStore, classes: np.ndarray) -> np.ndarray:
        """Row indices of the selected clips the task uses (``classes`` from ``LabelMap``),
        in store order."""
        keep = classes != LEFT_OUT
        if self.splits:
            keep &= np.isin(store.column("split"), list(self.splits))
        if self.subjects is not None:
            keep &= np.isin(store.column("subject"), list(self.subjects))
        return np.flatnonzero(keep)

    def describe(self) -> str:
        splits = ",".join(repr(x) for x in self.splits) or "*"
        if self.subjects is None:
            return f"split={splits}"
        return f"split={splits} subjects={len(self.subjects)}"

    def to_dict(self) -> dict[str, Any]:
        return {"splits": list(self.splits), "subjects": None if self.subjects is None else list(self.subjects)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Selection":
        subjects = d.get("subjects")
        return cls(tuple(d.get("splits", ())), None if subjects is None else tuple(subjects))


@dataclass(frozen=True)
class Roles:
    train: Selection
    validation: Selection
    tests: dict[str, Selection] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"train": self.train.to_dict(), "validation": self.validation.to_dict(),
                "tests": {k: v.to_dict() for k, v in self.tests.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Roles":
        return cls(Selection.from_dict(d["train"]), Selection.from_dict(d["validation"]),
                   {k: Selection.from_dict(v) for k, v in d.get("tests", {}).items()})

    def sample_ids(self, store: FrameStore, classes: np.ndarray) -> dict[str, Any]:
        """The clip ids of every role (what a trial logs, so a run's data can be audited)."""
        ids = store.column("clip_id")
        pick = lambda sel: [str(x) for x in ids[sel.rows(store, classes)]]  # noqa: E731
        return {"train": pick(self.train), "validation": pick(self.validation),
                "tests": {k: pick(v) for k, v in self.tests.items()}}


def subjects_of(store: FrameStore, rows: np.ndarray) -> list[str]:
    """The subjects of ``rows``, in a stable natural order (``sub2`` before ``sub10``)."""
    return sorted({str(s) for s in store.column("subject")[rows]}, key=_natural)


def _natural(s: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s))
