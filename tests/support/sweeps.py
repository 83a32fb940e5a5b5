"""A small sweep run by a separate driver process (``python -m orchestrator.cli``) on a
test cluster, and what the tests read back: MLflow runs (SQLite in the workdir, or an
``orch server``) and Ray
Tune's experiment directory. The uninterrupted reference sweep is computed once per test
session and shared (same config, seed and code give the same metrics whatever the
experiment's name)."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from orchestrator.experiment import Experiment
from tests.support.run_tree import trial_runs
from trainables.config import TrainConfig, TrialConfig

EPOCHS = 30  # an epoch of the tiny store takes ~0.1 s: a removed node or a killed driver meets a trial mid-training
CHECKPOINT_EVERY = 3
FINAL = ("test_uf1", "test_uar", "test_acc", "best_epoch", "best_val_uf1")
_REFERENCE: dict[str, dict[str, dict[str, float]]] = {}


def experiment_file(folder: Path, name: str, store: Path | str) -> Path:
    """2 seeds x lengths 4, all = 4 trials of EPOCHS epochs, a checkpoint every CHECKPOINT_EVERY."""
    exp = Experiment(name=name, seeds=(0, 1), lengths=("4", "all"), checkpoint_every=CHECKPOINT_EVERY,
                     trial=TrialConfig(train=TrainConfig(epochs=EPOCHS))).with_store(str(store))
    path = folder / f"{name}.yaml"
    path.write_text(exp.to_yaml())
    return path


def orch(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", *args]


def driver_env(env: dict) -> dict:
    """A driver's environment: unbuffered (a killed driver's output is all there), wide lines."""
    return {**env, "PYTHONUNBUFFERED": "1", "COLUMNS": "400"}


def run_orch(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(orch(*args), env=driver_env(env), capture_output=True, text=True, timeout=600)


def start_orch(env: dict, out: Path, *args: str) -> subprocess.Popen:
    """The driver in the background, its output to ``out``."""
    return subprocess.Popen(orch(*args), env=driver_env(env), stdout=open(out, "w"), stderr=subprocess.STDOUT)


def client(where: Path | str) -> MlflowClient:
    """The runs' tracking store: a workdir's SQLite (a path) or a tracking URI (``orch server``)."""
    return MlflowClient(where if isinstance(where, str) else f"sqlite:///{where / 'mlflow.db'}")


def runs(where: Path | str, experiment: str) -> list:
    """The experiment's trial runs (not their parent)."""
    c = client(where)
    exp = c.get_experiment_by_name(experiment)
    return [] if exp is None else trial_runs(c, exp.experiment_id)


def steps(where: Path | str, run) -> list[int]:
    return sorted(m.step for m in client(where).get_metric_history(run.info.run_id, "val_uf1"))


def tune_dir(storage: Path, experiment: str) -> Path | None:
    found = glob.glob(str(storage / f"{experiment}-*" / "tuner.pkl"))
    return Path(found[0]).parent if found else None


def results(trial_dir: Path) -> list[dict]:
    """Ray Tune's result.json of a trial: one row per reported epoch, in order."""
    f = trial_dir / "result.json"
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.exists() else []


def final_metrics(where: Path | str, experiment: str) -> dict[str, dict[str, float]]:
    return {r.info.run_name: {k: r.data.metrics[k] for k in FINAL} for r in runs(where, experiment)}


def reference(env: dict, address: str, store: Path, folder: Path) -> dict[str, dict[str, float]]:
    """Final metrics per trial name of the uninterrupted sweep (computed once per session)."""
    if "ref" not in _REFERENCE:
        folder.mkdir(parents=True, exist_ok=True)
        wd = folder / "work"
        r = run_orch(env, "run", str(experiment_file(folder, "ref", store)), "--address", address,
                     "--workdir", str(wd), "--no-progress")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "4 trained, 0 reused" in r.stdout, r.stdout
        _REFERENCE["ref"] = final_metrics(wd, "ref")
        assert len(_REFERENCE["ref"]) == 4
    return _REFERENCE["ref"]
