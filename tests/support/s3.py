"""An S3-compatible server on loopback for the tests: moto's server mode (``moto_server -H
127.0.0.1 -p PORT``), started once per session. ``s3_server`` sets the environment that
pyarrow (and every process started after it: Ray's workers, ``scripts/orch``) reaches it
with: ``AWS_ENDPOINT_URL`` and dummy credentials. Tests skip, with the reason, when moto is
not installed (``pip install -e '.[test]'`` installs it).

``tests/conftest.py`` makes it a fixture of every test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _moto_server() -> str | None:
    beside = Path(sys.executable).parent / "moto_server"
    return str(beside) if beside.exists() else shutil.which("moto_server")


class S3Server:
    def __init__(self, endpoint: str):
        self.endpoint = endpoint

    def bucket_uri(self, prefix: str = "") -> str:
        """A fresh bucket's URI (created on first write), ``prefix`` inside it."""
        return f"s3://orch-test-{uuid.uuid4().hex[:10]}" + (f"/{prefix}" if prefix else "")


@pytest.fixture(scope="session")
def s3_server():
    exe = _moto_server()
    if exe is None:
        pytest.skip("moto is not installed (pip install 'moto[server]'): no S3 server for the store-URI tests")
    port = _free_port()
    log = open(os.devnull, "wb")
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto_server on {endpoint} did not start (exit status {proc.poll()})")
            time.sleep(0.1)
    saved = {k: os.environ.get(k) for k in (*ENV, "AWS_ENDPOINT_URL")}
    os.environ.update(ENV, AWS_ENDPOINT_URL=endpoint)
    try:
        yield S3Server(endpoint)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
