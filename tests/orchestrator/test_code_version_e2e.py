"""A FINISHED run is reused only by the code that made it (real Ray Tune, real MLflow)."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator import runner
from orchestrator.cli import app
from tests.support.run_tree import one_parent, trial_runs
from trainables.code_version import code_version

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _local_tracking(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _runs(wd: Path):
    client = MlflowClient(f"sqlite:///{wd / 'mlflow.db'}")
    exp = client.get_experiment_by_name("codever")
    return trial_runs(client, exp.experiment_id, order_by=["attributes.start_time ASC"])


def _parent(wd: Path, n_children: int):
    client = MlflowClient(f"sqlite:///{wd / 'mlflow.db'}")
    return one_parent(client, client.get_experiment_by_name("codever").experiment_id, n_children)


def _summary(output: str) -> tuple[int, int]:
    m = re.search(r"(\d+) trained, (\d+) reused", output)
    assert m, output
    return int(m[1]), int(m[2])


def test_a_code_change_trains_again_unless_reuse_across_versions(tiny_store, ray_session, tmp_path, monkeypatch):
    wd = tmp_path / "work"
    args = ["ablation", "--seeds", "1", "--lengths", "4", "--epochs", "2", "--store", str(tiny_store),
            "--experiment", "codever", "--workdir", str(wd), "--no-progress"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert _summary(first.output) == (1, 0)
    runs = _runs(wd)
    assert len(runs) == 1
    here = code_version()
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    for r in runs:
        p = r.data.params
        assert p["code.digest"] == r.data.tags["orch.code_digest"] == here["digest"]
        assert p["code.version"] == importlib.metadata.version("orch")
        assert p["code.git_commit"] == commit and p["code.git_dirty"] in ("true", "false", "unknown")
        for lib in ("torch", "ray", "mlflow", "numpy"):
            assert p[f"code.{lib}"] == importlib.metadata.version(lib)
        assert p["runtime.device"] == "cpu"

    same = CliRunner().invoke(app, args)  # the same code: reused
    assert same.exit_code == 0, same.output
    assert _summary(same.output) == (0, 1) and len(_runs(wd)) == 1

    # the code that makes the numbers changed (a fix to training, say): the same command trains again
    changed = {**here, "digest": "0123456789abcdef", "git_commit": "f" * 40}
    monkeypatch.setattr(runner, "code_version", lambda: changed)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert _summary(again.output) == (1, 0)
    after = _runs(wd)
    assert len(after) == 2
    new = [r for r in after if r.info.run_id not in {x.info.run_id for x in runs}]
    assert {r.data.params["code.digest"] for r in new} == {"0123456789abcdef"}
    assert {r.data.params["code.git_commit"] for r in new} == {"f" * 40}
    assert {r.info.status for r in after} == {"FINISHED"}

    # yet other code, asked to reuse across versions: nothing trained; the summary says the run was made by other code
    monkeypatch.setattr(runner, "code_version", lambda: {**here, "digest": "fedcba9876543210"})
    across = CliRunner().invoke(app, [*args, "--reuse-across-versions"])
    assert across.exit_code == 0, across.output
    assert _summary(across.output) == (0, 1)
    assert "1 made by other code" in across.output
    assert len(_runs(wd)) == 2
    # one parent throughout; it names the latest invocation's code and flag
    parent = _parent(wd, n_children=2)
    assert parent.data.tags["orch.code_digest"] == parent.data.tags["code.digest"] == "fedcba9876543210"
    assert parent.data.tags["orch.reuse_across_versions"] == "true"
    # without the flag, that code trains its own
    own = CliRunner().invoke(app, args)
    assert _summary(own.output) == (1, 0) and len(_runs(wd)) == 3
    assert _parent(wd, n_children=3).data.tags["orch.reuse_across_versions"] == "false"
