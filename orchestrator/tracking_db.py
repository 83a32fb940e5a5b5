"""A new SQLite tracking database starts as a copy of MLflow's own empty one.

MLflow builds a new SQLite database by running every one of its schema migrations
(alembic): 3-5 s on a 2-core machine, paid by every fresh workdir — a first ``orch
ablation``, an ``orch server`` on a new workdir, each end-to-end test. The empty database
those migrations end with depends only on the MLflow version, so it is made once per
version, by MLflow itself (``MlflowClient`` on a new file), kept in ``$ORCH_CACHE_DIR``
(default ``~/.cache/orch``) as ``mlflow-<version>-empty-v1.db``, and copied where a new
database is wanted. Its one row that depends on where it was made, MLflow's ``Default``
experiment (id 0, whose artifact location is resolved at creation), is left out of the
copy: MLflow creates it at the first open, as it does in a database it made itself.

An existing database is never touched; a non-SQLite URI is left alone; if the copy cannot
be made (no writable cache), MLflow builds the database as before.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import sqlite3
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_ENV = "ORCH_CACHE_DIR"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "orch")


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URI (None for any other URI, or an in-memory database)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def template() -> Path:
    """MLflow's empty database of this MLflow version, without its ``Default`` experiment;
    made (by MLflow) the first time it is asked for."""
    from mlflow import MlflowClient  # only here: the server's driver need not import MLflow

    path = cache_dir() / f"mlflow-{importlib.metadata.version('mlflow')}-empty-v1.db"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        client = MlflowClient(f"sqlite:///{tmp}")
        client.search_experiments()  # the store is opened: the migrations have run
        client._tracking_client.store.engine.dispose()  # every connection closed before the file is copied
        with sqlite3.connect(tmp) as db:
            db.execute("DELETE FROM experiment_tags WHERE experiment_id = 0")
            db.execute("DELETE FROM experiments WHERE experiment_id = 0")
        db.close()
        os.replace(tmp, path)  # atomic: another process sees no template or a whole one
    finally:
        tmp.unlink(missing_ok=True)
    return path


def seed_sqlite(uri: str) -> bool:
    """If ``uri`` is a SQLite database that does not exist yet, make it a copy of the empty
    template (``template``). True if it did."""
    path = sqlite_path(uri)
    if path is None or path.exists():
        return False
    try:
        source = template()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        shutil.copyfile(source, tmp)
        try:
            os.link(tmp, path)  # fails if another process made the database meanwhile: theirs stays
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as e:  # no cache to write to, a read-only place: MLflow builds the database itself
        log.warning("could not copy an empty MLflow database to %s (%s); MLflow makes it instead", path, e)
        return False
    return True
