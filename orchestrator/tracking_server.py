"""MLflow's tracking server for a cluster (``orch server``) or one machine (``orch ui``).

``mlflow server`` runs as a child process (this environment's mlflow, ``python -m mlflow``)
with artifact serving: runs are created with artifact locations ``mlflow-artifacts:/…``,
so trials upload their artifacts through the server and no worker needs a shared path;
the files land under ``--artifacts-destination`` (the workdir's ``mlartifacts/``). The
backend is the workdir's SQLite unless a database URI is given (PostgreSQL for a shared
head: SQLite over NFS is unsafe).

Safe by default: it binds 127.0.0.1 unless ``--host`` names another interface on the
command line (``MLFLOW_HOST`` and friends in the environment are not obeyed: every
option is passed explicitly), and MLflow's host-header and CORS checks are set to the
names the server is reached by (``allowed_hosts``), not MLflow's default of every
private address. The child gets its own process group; Ctrl-C (SIGINT) or SIGTERM to
``orch server`` is forwarded to that group (as SIGTERM; SIGKILL after ``STOP_WITHIN_S``), so no server worker outlives it.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
HEALTHY_WITHIN_S = 180.0  # how long a starting server may take (SQLite migrations at first start)
STOP_WITHIN_S = 20.0  # after a forwarded Ctrl-C, then the group is killed
_DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
# MLflow reads these from the environment when its options are not given; orch gives them
_NOT_INHERITED = ("MLFLOW_HOST", "MLFLOW_PORT", "MLFLOW_SERVER_ALLOWED_HOSTS", "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS",
                  "MLFLOW_BACKEND_STORE_URI", "MLFLOW_DEFAULT_ARTIFACT_ROOT", "MLFLOW_ARTIFACTS_DESTINATION",
                  "MLFLOW_ARTIFACTS_ONLY", "MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE")


class ServerError(Exception):
    """The server cannot be started as asked; the message says why."""


def check_tracking_uri(uri: str) -> str:
    """``uri`` if MLflow can track to it: an http(s) server or a database URI."""
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    if scheme in ("http", "https") or scheme in _DB_SCHEMES or uri.startswith("databricks"):
        return uri
    if scheme == "file" or not scheme:
        raise ValueError(f"--tracking-uri {uri!r}: expected http://HOST:PORT (an `orch server`) or a database "
                         f"URI (sqlite:///PATH/mlflow.db, postgresql://…); MLflow 3 has no file store")
    raise ValueError(f"--tracking-uri {uri!r}: unknown scheme {scheme!r} (http, https, sqlite, postgresql, mysql)")


def check_backend_uri(uri: str) -> str:
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    if scheme not in _DB_SCHEMES:
        raise ServerError(f"--backend-store-uri {uri!r}: expected a database URI (sqlite:///PATH, "
                          f"postgresql://USER@HOST/DB, mysql://…)")
    return uri


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def _interface_addresses() -> set[str]:
    """The IPv4 addresses of this machine's interfaces (Linux: SIOCGIFADDR per interface)."""
    found = set()
    try:
        import fcntl
        import struct

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _, name in socket.if_nameindex():
                try:
                    packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))  # SIOCGIFADDR
                    found.add(socket.inet_ntoa(packed[20:24]))
                except OSError:
                    continue
    except (ImportError, OSError, AttributeError):
        pass
    return found


def machine_names() -> list[str]:
    """The names and addresses other machines reach this one by: its host names and the
    addresses of its interfaces."""
    names = {socket.gethostname(), socket.getfqdn()} | _interface_addresses()
    try:
        names.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass
    return sorted(n for n in names if n and not is_loopback(n))


def allowed_hosts(host: str, port: int) -> list[str]:
    """The Host headers the server accepts: its loopback names, and the interface it binds
    (every name of this machine when it binds all interfaces), each with and without the port."""
    names = ["127.0.0.1", "localhost"]
    if not is_loopback(host):
        names += machine_names() if _is_wildcard(host) else [host]
    return [n for name in dict.fromkeys(names) for n in (name, f"{name}:{port}")]


def public_uri(host: str, port: int) -> str:
    """The tracking URI to give the trials."""
    if _is_wildcard(host):
        names = machine_names()
        ips = [n for n in names if n.replace(".", "").isdigit()]
        host = (ips or names or ["127.0.0.1"])[0]
    return f"http://{host}:{port}"


@dataclass(frozen=True)
class ServerSpec:
    host: str
    port: int
    backend_store_uri: str
    artifacts: Path  # where served artifacts are written (--artifacts-destination)
    workers: int = 2
    allowed: tuple[str, ...] = ()  # Host headers allowed; default: allowed_hosts(host, port)

    @property
    def uri(self) -> str:
        return public_uri(self.host, self.port)

    @property
    def local_url(self) -> str:
        """Where this machine reaches it (for the health check)."""
        return f"http://{'127.0.0.1' if _is_wildcard(self.host) else self.host}:{self.port}"

    def hosts(self) -> list[str]:
        return list(self.allowed) or allowed_hosts(self.host, self.port)

    def command(self) -> list[str]:
        hosts = self.hosts()
        origins = [f"http://{h}" for h in hosts if ":" in h]
        return [sys.executable, "-m", "mlflow", "server",
                "--host", self.host, "--port", str(self.port), "--workers", str(self.workers),
                "--backend-store-uri", self.backend_store_uri,
                "--serve-artifacts", "--artifacts-destination", str(self.artifacts),
                "--allowed-hosts", ",".join(hosts), "--cors-allowed-origins", ",".join(origins)]


def spec_for(workdir_root: Path, host: str | None = None, port: int = DEFAULT_PORT,
             backend_store_uri: str | None = None, workers: int = 2, allowed: str | None = None) -> ServerSpec:
    """The server of a workdir: its SQLite (unless a database URI is given) and its
    ``mlartifacts/``; loopback unless ``host`` names another interface."""
    host = host or DEFAULT_HOST
    if port == 0:
        port = free_port(host)
    if not 1 <= port <= 65535:
        raise ServerError(f"--port {port}: expected 1-65535 (or 0: a free port)")
    if workers < 1:
        raise ServerError(f"--workers {workers}: at least 1")
    backend = check_backend_uri(backend_store_uri) if backend_store_uri else f"sqlite:///{workdir_root / 'mlflow.db'}"
    hosts = tuple(h.strip() for h in (allowed or "").split(",") if h.strip())
    if "*" in hosts:
        raise ServerError("--allowed-hosts '*': every Host header would be accepted (DNS rebinding); name the hosts")
    return ServerSpec(host, port, backend, workdir_root / "mlartifacts", workers, hosts)


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port nothing listens on now on ``host`` (the system picks it): ``--port 0``."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise ServerError(f"{host}:{port}: cannot listen there ({e.strerror}); another server (an earlier "
                              f"`orch server`?) may hold the port: stop it or pass --port") from None


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start(spec: ServerSpec) -> subprocess.Popen:
    """The mlflow server process (its own process group), not yet healthy."""
    check_port_free(spec.host, spec.port)
    spec.artifacts.mkdir(parents=True, exist_ok=True)
    from orchestrator.tracking_db import seed_sqlite

    seed_sqlite(spec.backend_store_uri)  # a new SQLite database: MLflow's empty one, copied (tracking_db)
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    # MLflow's job runner (GenAI scorer jobs; 7 more processes) is not used by orch
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return subprocess.Popen(spec.command(), env=env, start_new_session=True)


def wait_healthy(spec: ServerSpec, proc: subprocess.Popen, within_s: float = HEALTHY_WITHIN_S) -> None:
    deadline = time.monotonic() + within_s
    while not healthy(spec.local_url):
        if proc.poll() is not None:
            raise ServerError(f"mlflow server exited with status {proc.returncode} before it was healthy "
                              f"(its messages are above)")
        if time.monotonic() > deadline:
            stop(proc)
            raise ServerError(f"mlflow server did not answer {spec.local_url}/health within {within_s:.0f} s")
        time.sleep(0.3)


def stop(proc: subprocess.Popen, within_s: float = STOP_WITHIN_S) -> int:
    """SIGTERM to the server's process group (uvicorn, under mlflow, shuts down on it; it
    does not on a SIGINT sent to it), then SIGKILL after ``within_s``."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(within_s)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # workers left behind, if any
    except (ProcessLookupError, PermissionError):
        pass
    return proc.wait()


def server_ready(spec: ServerSpec) -> list[str]:
    """What ``orch server`` says once it answers: where it is and how the trials use it."""
    return [f"tracking server ready: {spec.uri}  (backend {spec.backend_store_uri}; artifacts {spec.artifacts})",
            f"use it with: --tracking-uri {spec.uri}   (or export MLFLOW_TRACKING_URI={spec.uri}); "
            f"UI: {spec.uri}; Ctrl-C stops it"]


def serve(spec: ServerSpec, say: Callable[[str], None] = print,
          ready: Callable[[ServerSpec], list[str]] = server_ready) -> int:
    """Run the server until it exits or Ctrl-C / SIGTERM (forwarded); its exit status.
    Once it answers, each line of ``ready(spec)`` is said."""
    if not is_loopback(spec.host):
        say(f"listening on {spec.host}:{spec.port}: reachable from other machines; Host headers allowed: "
            f"{', '.join(spec.hosts())} (--allowed-hosts to change)")
    stopping = {"now": False}
    running: dict[str, subprocess.Popen] = {}

    def forward(signum, frame):
        stopping["now"] = True
        if "proc" in running:
            try:
                os.killpg(running["proc"].pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    # the handlers first: a Ctrl-C while the server starts must not leave it behind
    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    proc = None
    try:
        proc = running["proc"] = start(spec)
        if stopping["now"]:  # asked to stop while it was being started
            stop(proc)
            return 0
        wait_healthy(spec, proc)
        for line in ready(spec):
            say(line)
        while proc.poll() is None and not stopping["now"]:
            try:
                proc.wait(1.0)
            except subprocess.TimeoutExpired:
                continue
    except ServerError:
        if stopping["now"] and proc is not None:  # stopped while starting
            stop(proc)
            return 0
        raise
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if proc is not None and (proc.poll() is None or stopping["now"]):
            stop(proc)
    return 0 if stopping["now"] else proc.returncode


def experiment_pages(backend_store_uri: str) -> list[tuple[str, str]]:
    """(name, id) of each live experiment in the database, newest first (for ``orch ui``)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        found = MlflowClient(backend_store_uri).search_experiments(order_by=["creation_time DESC"])
    except MlflowException as e:
        raise ServerError(f"{backend_store_uri}: cannot read its experiments ({str(e).splitlines()[0]})") from None
    return [(e.name, e.experiment_id) for e in found if e.name != "Default"]


def runs_page(base_url: str, experiment_id: str) -> str:
    """The address of an experiment's training runs in the MLflow UI. ``workflowType``: the
    UI's "Model training" side (MLflow 3.17's UI opens an experiment on its GenAI side,
    Traces, unless the browser last chose the other)."""
    return f"{base_url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def ui_ready(spec: ServerSpec, experiments: list[tuple[str, str]]) -> list[str]:
    """What ``orch ui`` says once the UI answers: its address, then each experiment's runs page."""
    lines = [f"MLflow UI: {spec.uri}  (runs of {spec.backend_store_uri}; Ctrl-C stops it)"]
    lines += [f"experiment {name!r}: {runs_page(spec.uri, eid)}" for name, eid in experiments]
    return lines
