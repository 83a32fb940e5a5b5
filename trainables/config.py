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
    """Which store, the classes its labels are scored in, and what a trial sees of each clip.

    Which clips play which role (train / validation / tests) is not part of it: the
    experiment's protocol decides that per trial (``storage.selection.Roles``).
    """

    store: str = ""
    label_map: str = "store"  # store labels -> task classes, by name (storage.selection.LABEL_MAPS)
    length: int | None = None  # frames per clip, evenly spaced; None = all frames
    token: str = "flow_roi"  # per-frame token features, by name (trainables.tokens)
    token_grid: int = 16  # pixel_diff: difference image pooled to grid x grid


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 16  # the built-in benchmark's all-frames model peaks at epochs 9-16 (see docs/ARCHITECTURE.md, Training)
    batch_size: int = 32
    lr: float = 0.005  # Adam's initial learning rate (the paper's)
    lr_final_ratio: float = 0.02  # cosine decay per epoch down to lr * ratio
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm (0 = off); keeps long sequences stable
    class_weight: str = "none"  # "balanced": cross-entropy weighted by inverse class frequency in train


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
        return build_dataclass(cls, d, "")

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


def build_dataclass(cls: type, d: dict[str, Any], where: str = ""):
    """``cls`` from a mapping (YAML, Ray's config), naming the field on an unknown key or a
    value of the wrong type (judged against the field's default)."""
    if not isinstance(d, dict):
        raise ValueError(f"{where.rstrip('.') or 'config'}: expected a mapping, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ValueError(f"{where or 'config'}: unknown field(s) {sorted(unknown)}; known: {sorted(fields)}")
    kwargs = {}
    for name, value in d.items():
        sub = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}.get(name) if cls is TrialConfig else None
        if sub:
            kwargs[name] = build_dataclass(sub, value, f"{where}{name}.")
            continue
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else None
        kwargs[name] = check_value(value, default, f"{where}{name}")
    return cls(**kwargs)


def check_value(value: Any, default: Any, where: str) -> Any:
    if hasattr(value, "item") and not isinstance(value, (str, bytes, list, dict)):  # a numpy scalar (Tune samples)
        value = value.item()
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        return value
    if not ok:
        raise ValueError(f"{where}: expected {type(default).__name__}, got {value!r}")
    return value
