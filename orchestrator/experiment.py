"""The ablation experiment: seeds x frame lengths, each trial the same configuration.

Split roles are those of the paper's ablation (Section 5.1): train on ``train``, choose
the epoch on ``test_A`` (validation), report on ``test_B`` (test).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from storage.sampling import length_name, parse_length
from trainables.config import TrialConfig
from trainables.tokens import TOKENS

DEFAULT_LENGTHS = ("4", "8", "12", "16", "all")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0

    @property
    def threads(self) -> int:
        """torch threads of a trial: its CPU share, at least one."""
        return max(1, int(self.cpus_per_trial))


@dataclass(frozen=True)
class AblationExperiment:
    name: str = "ablation"
    seeds: tuple[int, ...] = tuple(range(30))
    lengths: tuple[str, ...] = DEFAULT_LENGTHS
    trial: TrialConfig = field(default_factory=TrialConfig)  # seed and length are set per trial
    resources: Resources = field(default_factory=Resources)
    max_failures: int = 2  # retries of a failed trial
    checkpoint_every: int = 5  # epochs between checkpoints (and always the last)

    def __post_init__(self):
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"experiment: name {self.name!r} must be 1-100 of letters, digits, '_', '.', '-'")
        if not self.seeds:
            raise ValueError("seeds: at least one seed is needed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: duplicates in {self.seeds}")
        if not self.lengths:
            raise ValueError("lengths: at least one length is needed")
        norm = tuple(length_name(parse_length(x)) for x in self.lengths)
        if len(set(norm)) != len(norm):
            raise ValueError(f"lengths: duplicates in {self.lengths}")
        object.__setattr__(self, "lengths", norm)
        if self.trial.train.epochs < 1:
            raise ValueError(f"epochs: must be at least 1, got {self.trial.train.epochs}")
        if self.trial.data.token not in TOKENS:
            raise ValueError(f"token: {self.trial.data.token!r} is not one of {sorted(TOKENS)}")
        if self.resources.cpus_per_trial <= 0 or self.resources.gpus_per_trial < 0:
            raise ValueError(f"resources: cpus_per_trial must be > 0 and gpus_per_trial >= 0, got {self.resources}")

    @property
    def n_trials(self) -> int:
        return len(self.seeds) * len(self.lengths)

    def with_store(self, path: str) -> "AblationExperiment":
        return dataclasses.replace(self, trial=dataclasses.replace(
            self.trial, data=dataclasses.replace(self.trial.data, store=path)))

    def sweep_key(self, store_fingerprint: str) -> str:
        """Identity of the sweep: name + everything a trial's result depends on except its
        seed and length (the store by content, not by path). Runs of one sweep share it."""
        digest = dataclasses.replace(
            self.trial, data=dataclasses.replace(self.trial.data, store=store_fingerprint)
        ).digest(exclude=("seed", "data.length"))
        return f"{self.name}:{digest}"
