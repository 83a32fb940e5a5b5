"""A real ``orch server`` for tests: a subprocess on a free loopback port, over a workdir of
its own (its SQLite and its served artifacts), that a test can kill outright and start
again on the same port and backend (a tracking outage).

Use the ``orch_server`` fixture (module-scoped: a start costs seconds) by importing it
into a test module: ``from tests.support.tracking_server import orch_server  # noqa: F401``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
START_WITHIN_S = 240.0  # a loaded CI machine can take a minute to start MLflow's server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc: Linux)."""
    parent_of = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            parent_of[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent_of.items() if pp == p]
        out += kids
        todo += kids
    return out


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a socket listening on ``port`` (/proc/net/tcp, tcp6)."""
    found = set()
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state != "0A" or int(p, 16) != port:
                continue
            if v6:
                found.add("::" if set(addr) == {"0"} else addr)
            else:
                found.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
    return found


class OrchServer:
    """``orch server --port PORT --workdir WORKDIR`` as a subprocess."""

    def __init__(self, workdir: Path, port: int | None = None, extra_env: dict[str, str] | None = None):
        self.workdir, self.port = workdir, port or free_port()
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None
        self.log = workdir.parent / f"{workdir.name}-server.log"

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "OrchServer":
        env = {**os.environ, **self.extra_env}
        env.pop("MLFLOW_TRACKING_URI", None)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.cli", "server", "--port", str(self.port),
                 "--workdir", str(self.workdir), "--workers", "1"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_WITHIN_S
        while not healthy(self.uri):
            if self.proc.poll() is not None:
                raise RuntimeError(f"orch server exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"orch server not healthy within {START_WITHIN_S:.0f} s:\n"
                                   f"{self.log.read_text()[-3000:]}")
            time.sleep(0.3)
        return self

    def kill(self) -> None:
        """SIGKILL to ``orch server`` and every process under it: the server is gone at once
        (a crash, not a shutdown)."""
        if self.proc is None:
            return
        for pid in [*descendants(self.proc.pid), self.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(30)
        self.proc = None

    def stop(self) -> int:
        """Ctrl-C to ``orch server`` (forwarded to MLflow's server); its exit status."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc = proc
            self.kill()
            raise


@pytest.fixture(scope="module")
def orch_server(tmp_path_factory):
    # a bare `mlflow server` would obey these; `orch server` must not (it binds loopback and
    # sets its own allowed hosts unless told on its command line)
    server = OrchServer(tmp_path_factory.mktemp("tracking") / "server-workdir",
                        extra_env={"MLFLOW_HOST": "0.0.0.0", "MLFLOW_SERVER_ALLOWED_HOSTS": "*"})
    server.workdir.mkdir(parents=True, exist_ok=True)
    server.start()
    yield server
    try:
        server.stop()
    finally:
        server.kill()
