"""A search space from YAML: trial config paths mapped to Ray Tune domains.

```yaml
train.lr: {loguniform: [0.0005, 0.01]}
train.weight_decay: {uniform: [0.0, 0.001]}
train.class_weight: {choice: [none, balanced]}
model.depth: {grid: [2, 5]}
model.dropout: 0.1          # a plain value: fixed for every sample
```

Domains: ``loguniform``/``uniform`` ``[low, high]``, ``randint`` ``[low, high)``,
``choice`` (random pick) and ``grid`` (every value, ``samples`` times each). Paths name a
field of ``data``, ``model`` or ``train`` (``trial`` config sections); the store, the
frame length and the label map belong to the experiment and cannot be searched.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ray import tune

from orchestrator.yaml_file import read_yaml
from trainables.config import DataConfig, TrainConfig, check_value
from trainables.model import ModelConfig

SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
# the experiment's, not a trial's: the store, the frame length and the task's classes; and the
# epochs, which ASHA's budget (max_t) is measured in
FIXED_BY_EXPERIMENT = {"data.store", "data.length", "data.label_map", "train.epochs"}
RANGES = {"loguniform": tune.loguniform, "uniform": tune.uniform, "randint": tune.randint}


def parse_space(d: Any, where: str = "space") -> dict[str, Any]:
    if not isinstance(d, dict) or not d:
        raise ValueError(f"{where}: expected a mapping of config paths (e.g. train.lr) to domains")
    out = {}
    for path, spec in d.items():
        at = f"{where}: {path}"
        section, _, key = str(path).partition(".")
        if section not in SECTIONS or not key:
            raise ValueError(f"{at}: expected SECTION.FIELD with SECTION one of {sorted(SECTIONS)}")
        fields = {f.name: f for f in dataclasses.fields(SECTIONS[section])}
        if key not in fields:
            raise ValueError(f"{at}: {section} has no field {key!r}; known: {sorted(fields)}")
        if path in FIXED_BY_EXPERIMENT:
            raise ValueError(f"{at}: fixed by the experiment, not searchable")
        default = fields[key].default
        out[path] = _domain(spec, default, at)
    return out


def _domain(spec: Any, default: Any, at: str) -> Any:
    if not isinstance(spec, dict):
        return check_value(spec, default, at)
    if len(spec) != 1:
        raise ValueError(f"{at}: one domain per path, got {sorted(spec)}")
    (kind, args), = spec.items()
    if kind in RANGES:
        if not (isinstance(args, list) and len(args) == 2 and all(isinstance(a, (int, float)) for a in args)
                and args[0] < args[1]):
            raise ValueError(f"{at}: {kind} takes [low, high] with low < high, got {args!r}")
        if kind == "loguniform" and args[0] <= 0:
            raise ValueError(f"{at}: loguniform needs low > 0, got {args[0]}")
        if kind == "randint" and not isinstance(default, int):
            raise ValueError(f"{at}: randint is for integer fields")
        if kind != "randint" and not isinstance(default, float):
            raise ValueError(f"{at}: {kind} draws real numbers; for an integer field use randint, choice or grid")
        return RANGES[kind](*args)
    if kind in ("choice", "grid"):
        if not isinstance(args, list) or not args:
            raise ValueError(f"{at}: {kind} takes a non-empty list, got {args!r}")
        values = [check_value(v, default, at) for v in args]
        return tune.choice(values) if kind == "choice" else tune.grid_search(values)
    raise ValueError(f"{at}: unknown domain {kind!r}; known: {sorted([*RANGES, 'choice', 'grid'])}")


def is_random(space: dict[str, Any]) -> bool:
    """Whether any domain is drawn at random (else every sample of a grid point is the same)."""
    return any(hasattr(d, "sample") for d in space.values())


def load_space(path: str | Path) -> dict[str, Any]:
    return parse_space(read_yaml(path), str(path))
