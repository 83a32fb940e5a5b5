"""--storage s3://: Ray Tune's results and checkpoints in a bucket on an S3-compatible server
on loopback (moto), a separate driver process with local Ray; the sweep's Tune experiment is
found there again by the next run of the same command."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pyarrow.fs as pafs
import pytest

from tests.support.sweeps import run_orch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3_env():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = f"{sys.prefix}/bin/moto_server"
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    deadline = time.monotonic() + 60  # guards a server that never starts
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "moto_server did not start"
            time.sleep(0.1)
    yield env
    proc.terminate()
    proc.wait()


def test_tune_storage_in_a_bucket(tiny_store, tmp_path, s3_env, monkeypatch):
    import os

    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    env = {**os.environ, "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    uri = "s3://orch-tune/sweeps?allow_bucket_creation=true"
    args = ["ablation", "--seeds", "1", "--lengths", "4", "--epochs", "2", "--store", str(tiny_store),
            "--experiment", "s3abl", "--storage", uri, "--workdir", str(tmp_path / "work"), "--no-progress"]
    first = run_orch(env, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "1 trained, 0 reused" in first.stdout
    fs, _ = pafs.FileSystem.from_uri(uri)
    listed = [i.path for i in fs.get_file_info(pafs.FileSelector("orch-tune/sweeps", recursive=True))]
    tuners = [p for p in listed if p.endswith("/tuner.pkl")]
    assert len(tuners) == 1 and tuners[0].startswith("orch-tune/sweeps/s3abl-"), listed
    assert any("/checkpoint_" in p and p.endswith("/state.pt") for p in listed), listed  # written by the trial
    assert not (tmp_path / "work" / "ray_results").exists()  # nothing went to the default storage

    again = run_orch(env, *args)  # found on S3 as finished: started afresh under the same name, the run reused
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 trained, 1 reused" in again.stdout and "restoring" not in again.stdout
    listed = [i.path for i in fs.get_file_info(pafs.FileSelector("orch-tune/sweeps", recursive=True))]
    assert [p for p in listed if p.endswith("/tuner.pkl")] == tuners
