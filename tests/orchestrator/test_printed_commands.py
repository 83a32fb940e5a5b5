"""Commands orch prints for the user to copy stay on one line whatever the width: in a log,
a pipe or CI (no terminal: rich's 80 columns) a folded command fails when pasted.
The sweep summary's `orch ui …` line is checked by the browser test, which runs the
command it copied from that line."""

from __future__ import annotations

import shlex

import pytest
from typer.testing import CliRunner

from orchestrator import cli
from orchestrator.cli import app


@pytest.fixture(autouse=True)
def _log_width(monkeypatch):
    monkeypatch.setattr(cli.console, "width", 80)  # not a terminal: what rich uses in a log


def _line(output: str, start: str) -> str:
    found = [x for x in output.splitlines() if start in x]
    assert found, f"no line with {start!r} in:\n{output}"
    return found[0]


def test_save_yaml_prints_the_orch_run_command_whole(tmp_path):
    path = tmp_path / "a-folder-with-a-long-name-for-the-experiments" / "ablation-of-every-length.yaml"
    path.parent.mkdir()
    r = CliRunner().invoke(app, ["ablation", "--save-yaml", str(path)])
    assert r.exit_code == 0, r.output
    assert len(str(path)) > 80
    line = _line(r.output, "run it with: ")
    assert shlex.split(line.split("run it with: ", 1)[1]) == ["orch", "run", str(path)]


def test_orch_ui_on_a_tracking_server_prints_its_address_whole(tmp_path):
    uri = "http://a-tracking-server-with-a-long-name.cluster.example.org:5000"
    r = CliRunner().invoke(app, ["ui", "--tracking-uri", uri, "--workdir", str(tmp_path / ("w" * 30))])
    assert r.exit_code == 0, r.output
    line = _line(r.output, "the runs are on the tracking server")
    assert f"open {uri} in a browser" in line

