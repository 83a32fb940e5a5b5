"""A new SQLite tracking database is a copy of MLflow's empty one (orchestrator.tracking_db):
MLflow opens and uses it as one it made itself; an existing database is never touched."""

from __future__ import annotations

import sqlite3

from mlflow import MlflowClient

from orchestrator.tracking_db import seed_sqlite, sqlite_path, template


def _tables(path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_a_new_database_is_mlflows_empty_one_with_its_default_experiment_made_here(tmp_path, monkeypatch):
    template()  # made (or found) first, elsewhere: what it holds must not depend on where it was made
    monkeypatch.chdir(tmp_path)  # MLflow puts the Default experiment's artifacts under the working directory
    db = tmp_path / "work" / "mlflow.db"
    assert seed_sqlite(f"sqlite:///{db}") is True
    assert _tables(db) == _tables(template()) and "alembic_version" in _tables(db)
    client = MlflowClient(f"sqlite:///{db}")
    default = client.get_experiment("0")
    assert default.name == "Default" and default.artifact_location == str(tmp_path / "mlruns" / "0")
    assert [e.name for e in client.search_experiments()] == ["Default"]  # nothing else came with the copy
    exp_id = client.create_experiment("x")
    assert exp_id == "1"  # as in a database MLflow made itself
    run = client.create_run(exp_id)
    client.log_metric(run.info.run_id, "m", 0.5, step=1)
    client.set_terminated(run.info.run_id)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 0.5}

    # an existing database is left alone, and so is any other URI
    uri = f"sqlite:///{db}"
    assert seed_sqlite(uri) is False
    assert MlflowClient(uri).get_experiment_by_name("x") is not None
    assert seed_sqlite("http://127.0.0.1:5000") is False and seed_sqlite("sqlite:///:memory:") is False
    assert sqlite_path("postgresql://h/db") is None and sqlite_path(uri) == db
