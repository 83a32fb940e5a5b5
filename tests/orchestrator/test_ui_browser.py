"""The MLflow UI in a real browser: a small finished ablation made by the real CLI, `orch ui`
started as it tells the user to (the command copied from its output), and Debian's headless
Chromium (Selenium) on each view the issue names. Screenshots of each view are saved to
$ORCH_UI_SCREENSHOTS (default: this test's tmp_path/screenshots) and their folder printed.

Without Chromium and chromium-driver the test fails, naming them (scripts/system-deps.sh
installs them); ORCH_SKIP_BROWSER=1 skips it, explicitly."""

from __future__ import annotations

import os
import shlex
import struct
import tempfile
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator import cli
from orchestrator.cli import app
from tests.support.mlflow_ui import BrowserMissing, OrchUI, UIPages, browser_paths, chromium, find_sweep, \
    markdown_cells, tour

pytestmark = pytest.mark.slow

EXPERIMENT = "ui-e2e"


@pytest.fixture(autouse=True)
def _local_tracking(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="session", autouse=True)
def _browser() -> None:
    """Before the other session fixtures (the store, Ray): a missing browser fails at once."""
    if os.environ.get("ORCH_SKIP_BROWSER") == "1":
        pytest.skip("ORCH_SKIP_BROWSER=1")
    try:
        browser_paths()
    except BrowserMissing as e:
        pytest.fail(f"{e}; or set ORCH_SKIP_BROWSER=1 to skip this test")


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    return struct.unpack(">II", head[16:24])


def test_mlflow_ui_in_chromium(tiny_store, ray_session, tmp_path, monkeypatch):
    shots = Path(os.environ.get("ORCH_UI_SCREENSHOTS") or tmp_path / "screenshots")
    wd = tmp_path / "workdir-of-the-browser-test"  # the printed commands run past 80 columns
    monkeypatch.setattr(cli.console, "width", 80)  # a log, a pipe: rich's width when not on a terminal
    args = ["ablation", "--seeds", "2", "--lengths", "4,all", "--epochs", "3", "--store", str(tiny_store),
            "--experiment", EXPERIMENT, "--workdir", str(wd), "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output

    # the command printed at the end of the sweep, copied whole from its one line, starts the UI
    line = next(x for x in result.output.splitlines() if x.startswith("browse the runs: "))
    command = shlex.split(line.removeprefix("browse the runs: ").split(" (it prints")[0])
    assert command[1:] == ["ui", "--workdir", str(wd)], line

    client = MlflowClient(f"sqlite:///{wd / 'mlflow.db'}")
    exp = client.get_experiment_by_name(EXPERIMENT)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # set by the sweep

    ui = OrchUI([*command, "--port", "0"], tmp_path / "orch-ui.log").start()
    print(f"MLflow UI screenshots: {shots}")
    try:
        assert ui.answers() and ui.url.startswith("http://127.0.0.1:")
        sweep = find_sweep(client, EXPERIMENT, ui.url)
        assert ui.experiment_urls[EXPERIMENT] == sweep.experiment_url  # printed by orch ui
        assert sorted(sweep.children) == ["seed0-N4", "seed0-Nall", "seed1-N4", "seed1-Nall"]
        assert sweep.table == "reports/table4.md" and sweep.confusion == "confusion_test.png"
        d = chromium()
        try:
            pages = UIPages(d, ui.url, shots)
            views = tour(pages, sweep)
        finally:
            d.quit()
    finally:
        outlived = ui.stop()
    assert outlived == [], f"processes under orch ui outlived its SIGTERM: {outlived}"
    assert ui.workers, "orch ui started no server process?"

    # (a) the experiment's address opens on its training runs: the parent listed, its
    # children folded under it, not the GenAI overview of traces
    runs = views["runs"]
    assert "/runs" in runs.url and "/overview" not in runs.url and "/traces" not in runs.url
    assert f"{1 + len(sweep.children)} matching runs" in runs.text
    assert EXPERIMENT in runs.text and not any(name in runs.text for name in sweep.children)
    # (b) expanded, the parent shows each of its children below it; its overview lists them
    table = views["children"].text.split("Run Name", 1)[1]  # the runs table, from its header on
    assert all(table.index(EXPERIMENT) < table.index(name) for name in sweep.children)
    assert all(name in views["parent"].text for name in sweep.children)
    # (c) a child's val_uf1 per epoch: its chart, one point per epoch of the run's history
    history = client.get_metric_history(sweep.children[sweep.child], "val_uf1")
    assert f"{sweep.child} (val_uf1)" in views["metric"].text
    assert views["metric"].points == len(history) == 3
    #     and its confusion PNG shown in the artifacts view, at the size it was logged
    assert "confusion_test.png" in views["confusion"].text
    with tempfile.TemporaryDirectory() as tmp:
        logged = Path(client.download_artifacts(sweep.children[sweep.child], "confusion_test.png", tmp))
        assert views["confusion"].image == _png_size(logged)
    # (d) the parent's table4.md, rendered: every cell of the table orch wrote
    cells = markdown_cells((wd / "reports" / EXPERIMENT / "table4.md").read_text())
    assert cells and sweep.table_cells == cells
    assert "table4.md" in views["table"].text and all(c in views["table"].text for c in cells)
    for view in views.values():
        assert view.screenshot.stat().st_size > 10_000, view.screenshot
