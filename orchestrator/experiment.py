"""The experiment object: everything a run is — protocol, data selection, label map,
token / model, optimiser, schedule, epochs, seeds, resources — in one frozen dataclass that
reads and writes YAML (``orch run experiment.yaml``).

Protocols (``orchestrator.protocols`` turns an experiment into trials):

- ``ablation`` (the paper's Section 5.1, Table 4): seeds x frame lengths on fixed splits —
  train on ``train_split``, choose the epoch on ``validation_split``, report on
  ``test_splits`` (default: train / test_A / test_B).
- ``split`` (Section 4.2, DFME's competition split; Tables 2 and 3): per seed, the
  subjects of ``train_split`` divided into train and validation (``validation_fraction`` of
  them, subject-disjoint, drawn by the seed); the best-validation epoch predicts every
  split of ``test_splits`` (default test_A, test_B).
- ``loso``: one fold per subject (of the clips in ``use_splits``, default every split);
  per fold and seed, a ``validation_fraction`` of the *training* subjects chooses the epoch,
  never the held-out subject.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from storage.location import check_location
from storage.sampling import length_name, parse_length
from storage.sources.synthetic import BENCHMARKS
from orchestrator.search_space import parse_space
from orchestrator.yaml_file import read_yaml
from trainables.config import TrialConfig, build_dataclass, check_value
from trainables.model import POSITIONS
from trainables.tokens import TOKENS

PROTOCOLS = ("ablation", "split", "loso")
DEFAULT_LENGTHS = ("4", "8", "12", "16", "all")
DEFAULT_TESTS = {"ablation": ("test_B",), "split": ("test_A", "test_B"), "loso": ()}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    # a trial given a GPU trains on the CPU when torch has no CUDA (else it refuses to start):
    # for GPU packing on logical GPUs (``ray start --num-gpus``) with CPU-only torch
    allow_cpu_for_gpu_trials: bool = False
    # seeds trained as one model per Ray Tune trial (``orchestrator.seed_packs``): 1 (each seed
    # its own trial), K, or "auto" (packs sized by each trial's cost for the worker slots: seed_packs.balanced)
    pack_seeds: int | str = 1

    def __post_init__(self):
        if self.pack_seeds != "auto" and not (isinstance(self.pack_seeds, int) and not isinstance(self.pack_seeds, bool)
                                              and self.pack_seeds >= 1):
            raise ValueError(f"resources.pack_seeds: a whole number >= 1 or 'auto', got {self.pack_seeds!r}")

    @property
    def threads(self) -> int:
        """torch threads of a trial: its CPU share, at least one."""
        return max(1, int(self.cpus_per_trial))


@dataclass(frozen=True)
class Protocol:
    kind: str = "ablation"
    train_split: str = "train"  # ablation, split: the store split trained on
    validation_split: str = "test_A"  # ablation: the store split that chooses the epoch
    test_splits: tuple[str, ...] | None = None  # ablation, split: reported on (None: the protocol's default)
    validation_fraction: float = 0.2  # split, loso: share of the training subjects drawn as validation
    use_splits: tuple[str, ...] = ()  # loso: the store splits whose clips take part (empty: all)

    def __post_init__(self):
        if self.kind not in PROTOCOLS:
            raise ValueError(f"protocol.kind: {self.kind!r} is not one of {list(PROTOCOLS)}")
        for name in ("test_splits", "use_splits"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value)):
                raise ValueError(f"protocol.{name}: expected a list of split names, got {value!r}")
        if self.test_splits is None:
            object.__setattr__(self, "test_splits", DEFAULT_TESTS[self.kind])
        object.__setattr__(self, "test_splits", tuple(self.test_splits))
        object.__setattr__(self, "use_splits", tuple(self.use_splits))
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"protocol.validation_fraction: must be between 0 and 1, got {self.validation_fraction}")
        if self.kind == "ablation":
            if len(self.test_splits) != 1:
                raise ValueError(f"protocol.test_splits: the ablation reports on one split, got {list(self.test_splits)}")
            used = [self.train_split, self.validation_split, *self.test_splits]
            if len(set(used)) != len(used):
                raise ValueError(f"protocol: train, validation and test splits must differ, got {used}")
        if self.kind == "split" and self.train_split in self.test_splits:
            raise ValueError(f"protocol.test_splits: {self.train_split!r} is the training split")
        prefixes = [t if t.startswith("test") else f"test_{t}" for t in self.test_splits]  # their metric names
        if len(set(prefixes)) != len(prefixes):
            raise ValueError(f"protocol.test_splits: {list(self.test_splits)} would share metric names "
                             f"({', '.join(p + '_uf1' for p in prefixes)})")
        if self.kind == "loso" and self.test_splits:
            raise ValueError("protocol.test_splits: LOSO's test set is each fold's held-out subject; "
                             "choose the clips with protocol.use_splits")

    def roles_text(self) -> str:
        """The roles of the splits, as the help, the dry run and the report say them."""
        if self.kind == "ablation":
            return (f"train={self.train_split!r}, validation={self.validation_split!r} (selects the epoch), "
                    f"test={self.test_splits[0]!r}")
        frac = f"{self.validation_fraction:.0%}"
        if self.kind == "split":
            return (f"train={self.train_split!r} minus {frac} of its subjects drawn per seed as validation "
                    f"(selects the epoch; subject-disjoint), tests={', '.join(map(repr, self.test_splits))}")
        use = ", ".join(map(repr, self.use_splits)) or "every split"
        return (f"one fold per subject of {use}: test = the held-out subject, validation = {frac} of the other "
                f"subjects drawn per seed (selects the epoch), train = the rest")


@dataclass(frozen=True)
class SearchSpec:
    """A hyperparameter search before the protocol runs (``split`` and ``loso`` only):
    ``samples`` configurations drawn from ``space`` (config paths -> domains, as in a search
    space file: ``orchestrator.search_space``), trained on the protocol's train / validation
    data, ASHA stopping on validation UF1 after ``grace_period`` epochs (None: 2, or the
    epochs if fewer); the best is then run as the experiment."""

    space: dict[str, Any]
    samples: int = 8
    grace_period: int | None = None

    def __post_init__(self):
        parse_space(self.space, "search.space")  # names the path and the reason of a bad domain
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise ValueError(f"search.samples: a positive integer, got {self.samples!r}")
        g = self.grace_period
        if g is not None and (isinstance(g, bool) or not isinstance(g, int)):
            raise ValueError(f"search.grace_period: an integer number of epochs, got {g!r}")

    def domains(self) -> dict[str, Any]:
        return parse_space(self.space, "search.space")


@dataclass(frozen=True)
class Experiment:
    name: str = "ablation"
    protocol: Protocol = field(default_factory=Protocol)
    store: str = ""  # a frame store's path; "" = the built-in synthetic benchmark named by `benchmark`
    benchmark: str = "default"  # which built-in benchmark (storage.sources.synthetic.BENCHMARKS) when no store
    seeds: tuple[int, ...] = tuple(range(30))
    lengths: tuple[str, ...] = DEFAULT_LENGTHS
    trial: TrialConfig = field(default_factory=TrialConfig)  # seed and length are set per trial
    resources: Resources = field(default_factory=Resources)
    max_failures: int = 2  # retries of a failed trial
    checkpoint_every: int = 5  # epochs between checkpoints (and always the last)
    save_model: bool = False  # keep each run's selected parameters as an artifact (`orch predict` needs it)
    search: SearchSpec | None = None  # search hyperparameters first, then run the best as the protocol

    def __post_init__(self):
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"name: {self.name!r} must be 1-100 of letters, digits, '_', '.', '-'")
        if self.benchmark not in BENCHMARKS:
            raise ValueError(f"benchmark: {self.benchmark!r} is not one of {sorted(BENCHMARKS)}")
        try:  # a path, file://, s3:// or gs:// (storage.location)
            check_location(self.store)
        except ValueError as e:
            raise ValueError(f"store: {e}") from None
        seeds = tuple(self.seeds)
        if not seeds:
            raise ValueError("seeds: at least one seed is needed")
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
            raise ValueError(f"seeds: expected non-negative integers, got {list(seeds)}")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds: duplicates in {list(seeds)}")
        object.__setattr__(self, "seeds", seeds)
        if not self.lengths:
            raise ValueError("lengths: at least one length is needed")
        norm = tuple(length_name(parse_length(x)) for x in self.lengths)
        if len(set(norm)) != len(norm):
            raise ValueError(f"lengths: duplicates in {list(self.lengths)}")
        object.__setattr__(self, "lengths", norm)
        if self.trial.train.epochs < 1:
            raise ValueError(f"trial.train.epochs: must be at least 1, got {self.trial.train.epochs}")
        if self.trial.data.token not in TOKENS:
            raise ValueError(f"trial.data.token: {self.trial.data.token!r} is not one of {sorted(TOKENS)}")
        m = self.trial.model
        if m.positions not in POSITIONS:
            raise ValueError(f"trial.model.positions: {m.positions!r} is not one of {list(POSITIONS)}")
        if m.max_frames < 0:
            raise ValueError(f"trial.model.max_frames: 0 (the store's longest clip) or more, got {m.max_frames}")
        if m.time_points < 2:
            raise ValueError(f"trial.model.time_points: at least 2, got {m.time_points}")
        if self.trial.train.class_weight not in ("none", "balanced"):
            raise ValueError(f"trial.train.class_weight: expected 'none' or 'balanced', got {self.trial.train.class_weight!r}")
        if self.resources.cpus_per_trial <= 0 or self.resources.gpus_per_trial < 0:
            raise ValueError(f"resources: cpus_per_trial must be > 0 and gpus_per_trial >= 0, got {self.resources}")
        if self.max_failures < 0 or self.checkpoint_every < 1:
            raise ValueError("max_failures must be >= 0 and checkpoint_every >= 1")
        if self.search is not None:
            if self.protocol.kind not in ("split", "loso"):
                raise ValueError(f"search: a search runs before the split or loso protocol, not {self.protocol.kind!r}")
            g = self.search.grace_period
            if g is not None and not 1 <= g <= self.trial.train.epochs:
                raise ValueError(f"search.grace_period: between 1 and the epochs ({self.trial.train.epochs}), got {g}")

    @property
    def grace_period(self) -> int:
        """ASHA's grace period of the search: as given, else 2 epochs (or all, if fewer)."""
        g = self.search.grace_period if self.search is not None else None
        return g if g is not None else min(2, self.trial.train.epochs)

    def with_store(self, path: str) -> "Experiment":
        return dataclasses.replace(self, store=path, trial=dataclasses.replace(
            self.trial, data=dataclasses.replace(self.trial.data, store=path)))

    def sweep_key(self, store_fingerprint: str) -> str:
        """Identity of the sweep: name + protocol + everything a trial's result depends on
        except its seed and length (the store by content, not by path)."""
        digest = dataclasses.replace(
            self.trial, data=dataclasses.replace(self.trial.data, store=store_fingerprint)
        ).digest(exclude=("seed", "data.length"))
        p = self.protocol
        proto = (f"{p.kind}:{p.train_split}:{p.validation_split}:{','.join(p.test_splits)}:"
                 f"{p.validation_fraction}:{','.join(p.use_splits)}:save_model={self.save_model}")
        return f"{self.name}:{p.kind}:{_short(proto + digest)}"

    def params(self) -> dict[str, str]:
        """Experiment-level MLflow params of every trial run (the whole object is also each
        run's ``experiment.yaml``)."""
        p = self.protocol
        out = {"experiment.name": self.name, "protocol": p.kind,
               "protocol.validation_fraction": str(p.validation_fraction)}
        if not self.store:
            out["experiment.benchmark"] = self.benchmark
        if p.kind == "loso":
            out["protocol.use_splits"] = ",".join(p.use_splits) or "*"
        return out

    # -- YAML ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["protocol"]["test_splits"] = list(self.protocol.test_splits)
        d["protocol"]["use_splits"] = list(self.protocol.use_splits)
        d["seeds"], d["lengths"] = list(self.seeds), list(self.lengths)
        d["trial"] = self.trial.to_dict()
        del d["trial"]["seed"], d["trial"]["data"]["length"], d["trial"]["data"]["store"]  # per trial / top level
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Experiment":
        if not isinstance(d, dict):
            raise ValueError(f"experiment: expected a mapping, got {type(d).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"experiment: unknown field(s) {sorted(unknown)}; known: {sorted(fields)}")
        kw = dict(d)
        for name in ("name", "store", "benchmark", "max_failures", "checkpoint_every", "save_model"):
            if name in kw:
                kw[name] = check_value(kw[name], getattr(cls, name), name) if kw[name] is not None else _none(name)
        if "protocol" in kw:
            kw["protocol"] = build_dataclass(Protocol, kw["protocol"], "protocol.")
        if "resources" in kw:
            res = dict(kw["resources"]) if isinstance(kw["resources"], dict) else kw["resources"]
            pack = res.pop("pack_seeds", 1) if isinstance(res, dict) else 1  # a number or "auto": checked by Resources
            kw["resources"] = dataclasses.replace(build_dataclass(Resources, res, "resources."), pack_seeds=pack)
        if kw.get("search") is not None:
            kw["search"] = build_dataclass(SearchSpec, kw["search"], "search.")
        if isinstance(kw.get("seeds"), int) and not isinstance(kw["seeds"], bool):
            kw["seeds"] = tuple(range(kw["seeds"]))  # `seeds: 30` means 0..29
        elif "seeds" in kw:
            if not isinstance(kw["seeds"], list):
                raise ValueError(f"seeds: expected a list of integers or a count, got {kw['seeds']!r}")
            kw["seeds"] = tuple(kw["seeds"])
        if "lengths" in kw:
            kw["lengths"] = tuple(str(x) for x in (kw["lengths"] if isinstance(kw["lengths"], list) else [kw["lengths"]]))
        trial = kw.get("trial") or {}
        if isinstance(trial, dict) and "seed" in trial:
            raise ValueError("trial.seed: seeds are the experiment's `seeds`, not part of trial")
        if isinstance(trial, dict) and isinstance(trial.get("data"), dict) and {"length", "store"} & set(trial["data"]):
            raise ValueError("trial.data: `length` and `store` are the experiment's `lengths` and `store`")
        kw["trial"] = build_dataclass(TrialConfig, trial, "trial.")
        exp = cls(**kw)
        return exp.with_store(exp.store) if exp.store else exp

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Experiment":
        data = read_yaml(path)
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: {e}") from None


def _none(name: str):
    raise ValueError(f"{name}: a value is needed, got null")


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]
