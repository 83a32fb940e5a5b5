"""A real multi-node Ray cluster for tests: ``ray.cluster_utils.Cluster`` with a head that
offers no CPUs (so every trial runs on a worker node) and worker nodes of 1 CPU each, all
on this machine (they share its disk), with Ray's token authentication on.

The cluster lives in a helper process of its own (``python -m tests.support.cluster``),
not in pytest's: token authentication is set per process through the environment
(``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN``) and Ray caches it, so a cluster with its own
token must not share a process with the local Ray other tests use (``ray_session``).
Drivers (``orch ... --address ADDR``) are subprocesses given ``cluster.env``; a process
without the token cannot join (``test_resume_e2e`` checks it). The helper takes commands
on stdin: ``remove I`` (worker node I is removed: node loss) and ``quit``.

    with ray_cluster(workers=3) as c:
        subprocess.run([ORCH, "ablation", "--address", c.address, ...], env=c.env)
        c.remove_worker(0)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class TestCluster:
    address: str  # GCS address for ray.init(address=...) / --address
    env: dict[str, str]  # the environment a driver needs (the token, and auth on)
    workers: int
    _proc: subprocess.Popen = field(repr=False)
    removed: list[int] = field(default_factory=list)
    node_ids: list[str] = field(default_factory=list)  # the worker nodes' Ray node ids

    def remove_worker(self, i: int) -> None:
        """Worker node ``i`` disappears (its raylet and every worker process on it are killed)."""
        self._proc.stdin.write(f"remove {i}\n")
        self._proc.stdin.flush()
        reply = self._proc.stdout.readline().strip()
        if reply != f"removed {i}":
            raise RuntimeError(f"cluster helper: {reply or 'no answer'} (stderr: {_tail(self._proc)})")
        self.removed.append(i)

    def remove_worker_running(self, pid: int) -> int:
        """Remove the worker node whose raylet started process ``pid`` (a trial's worker
        process, e.g. the ``pid`` of its Tune results); returns the node's index."""
        self._proc.stdin.write(f"remove-host {pid}\n")
        self._proc.stdin.flush()
        reply = self._proc.stdout.readline().split()
        if reply[:1] != ["removed"]:
            raise RuntimeError(f"cluster helper: {' '.join(reply) or 'no answer'} (stderr: {_tail(self._proc)})")
        self.removed.append(int(reply[1]))
        return int(reply[1])


__test__ = False  # TestCluster is not a test class


def token_env(token: str | None = None) -> dict[str, str]:
    """This environment with Ray's token authentication on, with ``token`` (a new one if None)."""
    if token is None:
        from ray._private.authentication.authentication_token_generator import generate_new_authentication_token

        token = generate_new_authentication_token()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, PYTHONPATH=str(ROOT))
    return env


@contextmanager
def ray_cluster(workers: int = 2, cpus_per_worker: int = 1, gpus_per_worker: int = 0,
                env: dict[str, str] | None = None) -> Iterator[TestCluster]:
    """``gpus_per_worker``: logical GPUs (no device behind them); ``env``: more environment for
    the nodes (their raylets and every worker process inherit it) and the drivers."""
    env = {**token_env(), **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.cluster", str(workers), str(cpus_per_worker),
                             str(gpus_per_worker)],
                            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"cluster helper did not start: {_tail(proc)}")
        info = json.loads(line)
        yield TestCluster(info["address"], env, workers, proc, node_ids=info["nodes"])
    finally:
        if proc.poll() is None:
            try:
                proc.stdin.write("quit\n")
                proc.stdin.flush()
                proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()


def _tail(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        return "(still running)"
    return (proc.stderr.read() or "")[-3000:]


def _ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1 and len(out) < 10:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after the command name in parentheses
        out.append(pid)
    return out


def _serve(workers: int, cpus: int, gpus: int = 0) -> None:
    """The helper process: start the cluster, print its address, obey stdin."""
    import logging

    from ray.cluster_utils import Cluster

    logging.getLogger("ray").setLevel(logging.ERROR)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=cpus, num_gpus=gpus) for _ in range(workers)]
    cluster.wait_for_nodes()
    print(json.dumps({"address": cluster.address, "nodes": [n.node_id for n in nodes]}), flush=True)
    try:
        for line in sys.stdin:
            cmd = line.split()
            if cmd[:1] == ["remove"]:
                i = int(cmd[1])
                cluster.remove_node(nodes[i], allow_graceful=False)
                print(f"removed {i}", flush=True)
            elif cmd[:1] == ["remove-host"]:
                from ray._private import ray_constants

                up = _ancestors(int(cmd[1]))
                raylets = {i: n.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
                           for i, n in enumerate(nodes) if n is not None}
                hit = [i for i, pid in raylets.items() if pid in up]
                if hit:
                    cluster.remove_node(nodes[hit[0]], allow_graceful=False)
                    nodes[hit[0]] = None
                    print(f"removed {hit[0]}", flush=True)
                else:
                    print(f"not-found {cmd[1]} (ancestors {up}, raylets {raylets})", flush=True)
            elif cmd[:1] == ["quit"]:
                break
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    _serve(*(int(a) for a in sys.argv[1:4]))
