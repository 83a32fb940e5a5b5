"""What a protocol's ``report`` knows besides the runs: the experiment, the trials it
planned (so a trial without a FINISHED run is flagged), the class names, and how to read a
run's confusion matrix. Built the same way at the end of a sweep and by ``orch table``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from orchestrator.experiment import Experiment


@dataclass(frozen=True)
class PlannedTrial:
    name: str
    seed: int
    length: str
    fold: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "seed": self.seed, "length": self.length, "fold": self.fold}

    @classmethod
    def from_dict(cls, d: dict, where: str = "trials.json") -> "PlannedTrial":
        try:
            return cls(str(d["name"]), int(d["seed"]), str(d["length"]), str(d.get("fold", "") or ""))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: a trial needs name, seed, length (and fold): got {d!r} ({e})") from None


@dataclass(frozen=True)
class ReportContext:
    exp: Experiment
    planned: list[PlannedTrial]
    classes: tuple[str, ...] = ()
    unfinished: dict[str, str] = field(default_factory=dict)  # trial name -> why it has no result
    confusion: Callable[[str, str], np.ndarray | None] = lambda run_id, test: None

    def missing_text(self, expected: list[str], have, what: str) -> str:
        """For a row planned over the trials ``expected`` of which ``have`` have a result:
        "n = 28 of 30 seeds; 2 without a finished run: seed3-N16 (FAILED), ..." ("" when none is missing)."""
        lost = [n for n in expected if n not in set(have)]
        if not lost:
            return ""
        shown = [f"{n} ({self.unfinished.get(n, 'no run')})" for n in lost[:8]]
        shown += [f"... ({len(lost) - 8} more)"] if len(lost) > 8 else []
        return (f"n = {len(expected) - len(lost)} of {len(expected)} {what}; {len(lost)} without a finished run: "
                + ", ".join(shown))
