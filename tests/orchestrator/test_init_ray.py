"""Local Ray is the sweep's own: a driver started without --address never joins a Ray
instance that is already running on the machine (another sweep's, which would take this
sweep's trials with it when it ends)."""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys, ray
from orchestrator.runner import init_ray
from orchestrator.workdir import Workdir
init_ray(None, Workdir.resolve(sys.argv[1]))
print("GCS", ray.get_runtime_context().gcs_address)
ray.shutdown()
"""


def test_local_ray_does_not_join_a_running_instance(ray_session, tmp_path):
    """This test process's Ray stands for a ``ray start`` instance on the machine: it is
    named in Ray's ``ray_current_cluster`` file, where ``ray.init()`` without an address
    looks for one to join."""
    running = ray_session.get_runtime_context().gcs_address
    ray_tmp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # short: Ray's socket paths
    try:
        (ray_tmp / "ray").mkdir()
        (ray_tmp / "ray" / "ray_current_cluster").write_text(running)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RAY_TMPDIR": str(ray_tmp)}
        workdir = tmp_path / ("w" * 40)  # too long for Ray's session files: Ray's default temp dir
        out = subprocess.run([sys.executable, "-c", SCRIPT, str(workdir)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-3000:]
    started = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("GCS ")]
    assert started and started[0] != running, (started, running)
