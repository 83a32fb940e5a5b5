"""Plain, frozen config dataclasses for one trial, and the one place that turns them into
flat MLflow params and back. Defaults are the paper's values where the paper gives one."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from trainables.model import ModelConfig


@dataclass(frozen=True)
class DataConfig:
    """Which store, which split plays which role, and what a trial sees of each clip.

    Roles as in the paper's ablation (Section 5.1): train on ``train``, choose the epoch on
    ``test_A`` (validation), report on ``test_B`` (test).
    """

    store: str = ""
    train_split: str = "train"
    val_split: str = "test_A"
    test_split: str = "test_B"
    length: int | None = None  # frames per clip, evenly spaced; None = all frames
    token: str = "flow_roi"  # per-frame token features, by name (trainables.tokens)
    token_grid: int = 16  # pixel_diff: difference image pooled to grid x grid


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 24  # the all-frames model needs them: at 12 it lagged N=12 (88 vs 91 UF1), at 24 it led (95 vs 92)
    batch_size: int = 32
    lr: float = 0.005  # Adam's initial learning rate (the paper's)
    lr_final_ratio: float = 0.02  # cosine decay per epoch down to lr * ratio
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm (0 = off); keeps long sequences stable


@dataclass(frozen=True)
class TrialConfig:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # -- dict round trip (Ray Tune's config, YAML) ---------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialConfig":
        return _build(cls, d, "")

    # -- MLflow params -------------------------------------------------------------------
    def params(self) -> dict[str, str]:
        """Flat ``section.field`` -> string, as logged to MLflow."""
        out: dict[str, str] = {"seed": str(self.seed)}
        for section in ("data", "model", "train"):
            for k, v in dataclasses.asdict(getattr(self, section)).items():
                out[f"{section}.{k}"] = json.dumps(v) if not isinstance(v, str) else v
        return out

    def digest(self, exclude: tuple[str, ...] = ()) -> str:
        """A hash of the config's params, leaving out the named ones (e.g. seed, length)."""
        p = {k: v for k, v in self.params().items() if k not in exclude}
        return hashlib.sha256(json.dumps(p, sort_keys=True).encode()).hexdigest()[:12]


def _build(cls: type, d: dict[str, Any], where: str):
    if not isinstance(d, dict):
        raise ValueError(f"{where or 'config'}: expected a mapping, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ValueError(f"{where or 'config'}: unknown field(s) {sorted(unknown)}; known: {sorted(fields)}")
    kwargs = {}
    for name, value in d.items():
        sub = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}.get(name) if cls is TrialConfig else None
        kwargs[name] = _build(sub, value, f"{where}{name}.") if sub else value
    return cls(**kwargs)
