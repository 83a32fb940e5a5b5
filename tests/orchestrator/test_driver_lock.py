"""One live driver per experiment and workdir: a second one (``orch resume NAME``, or the
same command while the first runs) is refused instead of restoring the same Tune
experiment twice; a later command of the same name that replaces an interrupted one says so."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from orchestrator import resume_index
from orchestrator.cli import app
from orchestrator.experiment import Experiment
from orchestrator.resume_index import DriverBusy, driver_lock
from orchestrator.workdir import Workdir


def test_a_second_driver_of_the_same_experiment_is_refused(tmp_path):
    wd = Workdir.resolve(tmp_path / "work")
    with driver_lock(wd, "abl"):
        with pytest.raises(DriverBusy, match=r"'abl' is being run by another driver \(pid \d+, since"):
            with driver_lock(wd, "abl"):
                pass
        with driver_lock(wd, "other"):  # another experiment: no conflict
            pass
    with driver_lock(wd, "abl"):  # released when the first ended
        pass


def test_the_cli_refuses_while_another_driver_holds_the_experiment(tiny_store, tmp_path):
    wd = Workdir.resolve(tmp_path / "work")
    args = ["ablation", "--store", str(tiny_store), "--workdir", str(wd.root), "--seeds", "1", "--lengths", "4",
            "--epochs", "1", "--token", "pixel_diff", "--experiment", "busy", "--no-progress"]
    with driver_lock(wd, "busy"):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2 and "being run by another driver" in " ".join(r.output.split())
        r = CliRunner().invoke(app, ["resume", "busy", "--workdir", str(wd.root)])
        assert r.exit_code == 2  # no entry yet, or busy: never a second driver


def test_replacing_an_interrupted_command_is_named(tmp_path):
    wd = Workdir.resolve(tmp_path / "work")
    first = Experiment(name="abl", seeds=(0, 1))
    resume_index.record(wd, first, None, "", False, "d", command=["orch", "ablation", "--seeds", "2"])
    assert resume_index.replaces_unfinished(wd, first) is None  # the same experiment again: it restores
    assert resume_index.replaces_unfinished(wd, Experiment(name="abl", seeds=(0,))) == "orch ablation --seeds 2"
    resume_index.mark_finished(wd, "abl")
    assert resume_index.replaces_unfinished(wd, Experiment(name="abl", seeds=(0,))) is None
