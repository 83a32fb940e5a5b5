"""--storage s3://: Ray Tune's results and checkpoints in a bucket on an S3-compatible server
on loopback (moto), a separate driver process with local Ray; the sweep's Tune experiment is
found there again by the next run of the same command."""

from __future__ import annotations

import os

import pyarrow.fs as pafs
import pytest

from tests.support.sweeps import run_orch

pytestmark = pytest.mark.slow


def test_tune_storage_in_a_bucket(s3_server, tiny_store, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    bucket = s3_server.bucket_uri()[len("s3://"):]
    uri = f"s3://{bucket}/sweeps?allow_bucket_creation=true"
    args = ["ablation", "--seeds", "1", "--lengths", "4", "--epochs", "2", "--store", str(tiny_store),
            "--experiment", "s3abl", "--storage", uri, "--workdir", str(tmp_path / "work"), "--no-progress"]
    first = run_orch(env, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "1 trained, 0 reused" in first.stdout
    fs, _ = pafs.FileSystem.from_uri(uri)
    listed = [i.path for i in fs.get_file_info(pafs.FileSelector(f"{bucket}/sweeps", recursive=True))]
    tuners = [p for p in listed if p.endswith("/tuner.pkl")]
    assert len(tuners) == 1 and tuners[0].startswith(f"{bucket}/sweeps/s3abl-"), listed
    assert any("/checkpoint_" in p and p.endswith("/state.pt") for p in listed), listed  # written by the trial
    assert not (tmp_path / "work" / "ray_results").exists()  # nothing went to the default storage

    again = run_orch(env, *args)  # found on S3 as finished: started afresh under the same name, the run reused
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 trained, 1 reused" in again.stdout and "restoring" not in again.stdout
    listed = [i.path for i in fs.get_file_info(pafs.FileSelector(f"{bucket}/sweeps", recursive=True))]
    assert [p for p in listed if p.endswith("/tuner.pkl")] == tuners
