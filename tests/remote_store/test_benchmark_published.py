"""The built-in benchmark on a cluster whose nodes share no disk: with a remote Tune storage
(``--storage s3://…``) the driver publishes the benchmark under ``STORAGE/stores/`` and the
trials are given that URI (they fetch it per node), while the experiment keeps naming the
benchmark."""

from __future__ import annotations

import dataclasses

from rich.console import Console

from orchestrator import execute
from orchestrator.experiment import Experiment
from orchestrator.workdir import Workdir
from storage.location import read_manifest
from storage.store import FrameStore


def test_remote_storage_publishes_the_benchmark_for_the_trials(s3_server, tiny_store, tmp_path, monkeypatch):
    # narrow fake: the tiny store stands in for the benchmark's build (the default takes a minute)
    monkeypatch.setattr(execute, "builtin_store", lambda wd, console, name="default": tiny_store)
    storage = s3_server.bucket_uri("tune")
    wd = dataclasses.replace(Workdir.resolve(tmp_path / "work"), storage=storage + "?allow_bucket_creation=true")
    exp, fs = execute.open_store(Experiment(name="bench"), wd, Console(), dry_run=False)
    uri = exp.trial.data.store
    assert uri == f"{storage}/stores/{tiny_store.name}" and exp.store == "" and exp.benchmark == "default"
    assert read_manifest(uri).fingerprint == fs.fingerprint == FrameStore(tiny_store).fingerprint
    # a second driver finds it there and does not upload again
    said = Console(record=True, width=300)
    again, _ = execute.open_store(Experiment(name="bench"), wd, said, dry_run=False)
    assert again.trial.data.store == uri and "(already there)" in said.export_text()
    # a local storage (one machine or a shared disk): the local path, as before
    local, _ = execute.open_store(Experiment(name="bench"), Workdir.resolve(tmp_path / "work2"), Console(), False)
    assert local.trial.data.store == str(tiny_store.resolve())
