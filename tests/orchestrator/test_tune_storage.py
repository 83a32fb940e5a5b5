"""--storage parsing, the stable name of a sweep's Tune experiment, and orch resume's errors
(no Ray: these are the parts that decide *which* Tune experiment a command restores)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray import tune
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.experiment import Experiment
from orchestrator.resume_index import load, record
from orchestrator.tune_storage import StorageError, TuneStorage, identity, tune_name
from orchestrator.workdir import Workdir


def _space(**over):
    space = {"plan": tune.grid_search([{"name": "seed0-N4", "seed": 0}]),
             "trial": {"train": {"lr": tune.loguniform(1e-4, 1e-2)}, "model": {"depth": tune.choice([2, 5])}},
             "tracking": {"uri": "sqlite:///x.db", "experiment_id": "1"},
             "code": {"digest": "abc", "git_commit": "1" * 40}}
    space.update(over)
    return space


def test_the_same_sweep_gets_the_same_name_and_another_sweep_another():
    assert tune_name("abl", _space()) == tune_name("abl", _space())  # new domain objects, same name
    assert tune_name("abl", _space()).startswith("abl-")
    # a commit that changes no number (docs, orchestrator) is the same sweep
    assert identity(_space(code={"digest": "abc", "git_commit": "2" * 40})) == identity(_space())
    assert identity(_space(code={"digest": "def", "git_commit": "1" * 40})) != identity(_space())  # other code
    assert identity(_space(tracking={"uri": "http://h:5000", "experiment_id": "1"})) != identity(_space())
    other_domain = _space(trial={"train": {"lr": tune.loguniform(1e-4, 1e-1)}, "model": {"depth": tune.choice([2, 5])}})
    assert identity(other_domain) != identity(_space())
    uniform = _space(trial={"train": {"lr": tune.uniform(1e-4, 1e-2)}, "model": {"depth": tune.choice([2, 5])}})
    assert identity(uniform) != identity(_space())
    assert identity(_space(plan=tune.grid_search([{"name": "seed1-N4", "seed": 1}]))) != identity(_space())


def test_storage_paths_and_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    default = TuneStorage.resolve(None, tmp_path / "ray_results")
    assert default.is_local and default.path == str(tmp_path / "ray_results") and (tmp_path / "ray_results").is_dir()
    rel = TuneStorage.resolve("tune", tmp_path / "unused")
    assert rel.uri == rel.path == str(tmp_path / "tune")
    assert rel.run_config() == {"storage_path": str(tmp_path / "tune"), "storage_filesystem": None}
    assert rel.experiment_path("abl-123") == str(tmp_path / "tune" / "abl-123")
    file_uri = TuneStorage.resolve((tmp_path / "f").as_uri(), tmp_path / "unused")
    assert file_uri.path == str(tmp_path / "f") and file_uri.is_local
    with pytest.raises(StorageError, match="ftp.*not supported.*s3://"):
        TuneStorage.resolve("ftp://host/x", tmp_path)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StorageError, match="a-file/sub: cannot create"):
        TuneStorage.resolve(str(tmp_path / "a-file" / "sub"), tmp_path)


def test_bad_storage_and_unknown_resume_name_fail_clearly(tmp_path):
    r = CliRunner().invoke(app, ["ablation", "--storage", "ftp://h/x", "--workdir", str(tmp_path)])
    assert r.exit_code == 2 and "--storage ftp://h/x" in r.output and "not supported" in r.output
    r = CliRunner().invoke(app, ["resume", "nope", "--workdir", str(tmp_path)])
    assert r.exit_code == 2 and "no experiment 'nope'" in r.output
    wd = Workdir.resolve(tmp_path)
    record(wd, Experiment(name="abl", store="rel/store"), "127.0.0.1:6379", "s3://b/t", True, "d1",
           command=["orch", "ablation"])
    e = load(wd, "abl")
    assert (e.address, e.storage, e.reuse_across_versions, e.code_digest, e.finished) == (
        "127.0.0.1:6379", "s3://b/t", True, "d1", None)
    assert e.experiment.store == str(Path("rel/store").resolve())  # resumable from another directory
    r = CliRunner().invoke(app, ["resume", "other", "--workdir", str(tmp_path)])
    assert r.exit_code == 2 and "known: abl" in r.output
