"""``orch server`` / ``orch ui`` / ``--tracking-uri``: what is started and what is refused
(no server is started here; tests/orchestrator/test_tracking_server_e2e.py starts one)."""

import socket

import pytest
from typer.testing import CliRunner

from orchestrator import tracking_server as ts
from orchestrator.cli import app
from orchestrator.execute import mlflow_ui_command
from orchestrator.workdir import Workdir


def _opt(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_loopback_unless_a_host_is_named_and_allowed_hosts_always_set(tmp_path):
    cmd = ts.spec_for(tmp_path, port=5123).command()
    assert _opt(cmd, "--host") == "127.0.0.1"
    assert _opt(cmd, "--allowed-hosts") == "127.0.0.1,127.0.0.1:5123,localhost,localhost:5123"
    assert _opt(cmd, "--backend-store-uri") == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert "--serve-artifacts" in cmd and _opt(cmd, "--artifacts-destination") == str(tmp_path / "mlartifacts")

    # named explicitly: allowed, and the Host headers it is reached by are accepted
    cmd = ts.spec_for(tmp_path, host="192.0.2.7", port=5123).command()
    assert _opt(cmd, "--host") == "192.0.2.7"
    assert "192.0.2.7:5123" in _opt(cmd, "--allowed-hosts").split(",")
    cmd = ts.spec_for(tmp_path, host="0.0.0.0", port=5123).command()
    hosts = _opt(cmd, "--allowed-hosts").split(",")
    assert _opt(cmd, "--host") == "0.0.0.0" and "*" not in hosts
    assert f"{socket.gethostname()}:5123" in hosts and "127.0.0.1:5123" in hosts
    try:  # the address other machines reach this one by (the route out; no packet is sent)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("198.51.100.1", 9))
            outward = s.getsockname()[0]
    except OSError:
        outward = None
    if outward and not outward.startswith("127."):
        assert f"{outward}:5123" in hosts
        assert ts.spec_for(tmp_path, host="0.0.0.0", port=5123).uri == f"http://{outward}:5123" or outward in hosts


def test_refusals(tmp_path):
    with pytest.raises(ts.ServerError, match="every Host header"):
        ts.spec_for(tmp_path, allowed="*")
    with pytest.raises(ts.ServerError, match="expected a database URI"):
        ts.spec_for(tmp_path, backend_store_uri="file:///tmp/mlruns")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(ts.ServerError, match="may hold the port"):
            ts.check_port_free("127.0.0.1", s.getsockname()[1])
    with pytest.raises(ValueError, match="expected http://HOST:PORT"):
        ts.check_tracking_uri("127.0.0.1:5000")


def test_cli_refuses_a_tracking_uri_without_scheme_or_server(tmp_path):
    r = CliRunner().invoke(app, ["ablation", "--dry-run", "--tracking-uri", "head:5000", "--workdir", str(tmp_path)])
    assert r.exit_code == 2 and "--tracking-uri 'head:5000'" in r.output
    with socket.socket() as s:  # a free port: nothing answers there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = CliRunner().invoke(app, ["ablation", "--tracking-uri", f"http://127.0.0.1:{port}", "--workdir", str(tmp_path)])
    assert r.exit_code == 2 and f"tracking server http://127.0.0.1:{port}: no answer" in r.output
    r = CliRunner().invoke(app, ["server", "--backend-store-uri", "mlruns", "--workdir", str(tmp_path)])
    assert r.exit_code == 2 and "expected a database URI" in r.output


def test_tracking_uri_option_wins_and_the_summary_says_how_to_browse(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/mlflow.db")
    wd = Workdir.resolve(tmp_path, "http://head:5000")
    assert wd.tracking_uri == "http://head:5000"
    assert "open http://head:5000" in mlflow_ui_command(wd)
    assert Workdir.resolve(tmp_path).tracking_uri == "sqlite:////elsewhere/mlflow.db"
    assert "ui --backend-store-uri 'sqlite:////elsewhere/mlflow.db'" in mlflow_ui_command(Workdir.resolve(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert mlflow_ui_command(Workdir.resolve(tmp_path)).split(" (")[0].endswith(f"ui --workdir '{tmp_path}'")


def test_port_0_is_a_free_port_named_in_the_spec(tmp_path):
    spec = ts.spec_for(tmp_path, port=0)
    assert 1 <= spec.port <= 65535 and f"127.0.0.1:{spec.port}" in spec.hosts()
    ts.check_port_free("127.0.0.1", spec.port)  # nothing listens there
    assert _opt(spec.command(), "--port") == str(spec.port)


def test_orch_ui_names_each_experiments_runs_page(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    eid = MlflowClient(uri).create_experiment("abl")
    lines = ts.ui_ready(ts.spec_for(tmp_path, port=5123, backend_store_uri=uri), ts.experiment_pages(uri))
    assert lines[0].startswith("MLflow UI: http://127.0.0.1:5123 ")
    # the "Model training" side of MLflow 3.17's UI: its GenAI side (Traces) otherwise
    assert lines[1:] == [f"experiment 'abl': http://127.0.0.1:5123/#/experiments/{eid}/runs?workflowType=machine_learning"]
