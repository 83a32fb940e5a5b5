"""The one working directory everything a run writes goes under.

``--workdir`` or ``$ORCH_WORKDIR`` moves it; the default is ``./orch-work``.

    mlflow.db        the MLflow tracking store (SQLite), unless --tracking-uri or
                     MLFLOW_TRACKING_URI names another (e.g. an ``orch server``)
    mlartifacts/     MLflow artifacts
    ray_results/     Ray Tune experiments (trial checkpoints, results), unless --storage says elsewhere
    stores/          built-in benchmark stores, cached by their parameters
    reports/NAME/    tables and plots of experiment NAME
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "ORCH_WORKDIR"
DEFAULT = "orch-work"


@dataclass(frozen=True)
class Workdir:
    root: Path
    tracking: str | None = None  # --tracking-uri: wins over MLFLOW_TRACKING_URI and the workdir's SQLite
    storage: str = ""  # --storage: Ray Tune's results and checkpoints (orchestrator.tune_storage); "" = ray_results/

    @classmethod
    def resolve(cls, path: str | os.PathLike | None = None, tracking_uri: str | None = None) -> "Workdir":
        root = Path(path or os.environ.get(ENV_VAR) or DEFAULT).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return cls(root, tracking_uri or None)

    @property
    def local_tracking_uri(self) -> str:
        """The workdir's own SQLite tracking store."""
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def tracking_uri(self) -> str:
        """Where runs go: ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the workdir's SQLite."""
        return self.tracking or os.environ.get("MLFLOW_TRACKING_URI") or self.local_tracking_uri

    @property
    def artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def ray_results(self) -> Path:
        return self.root / "ray_results"

    @property
    def stores(self) -> Path:
        return self.root / "stores"

    def reports(self, experiment: str) -> Path:
        p = self.root / "reports" / experiment
        p.mkdir(parents=True, exist_ok=True)
        return p
