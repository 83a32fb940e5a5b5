"""Shared fixtures: a tiny synthetic store (built once per session) and one Ray instance
for every test that needs Ray (starting Ray costs seconds)."""

from __future__ import annotations

import dataclasses
import os

import pytest

from storage.sources.synthetic import SyntheticSpec, write_store

# camera mode: rendered 128 x 128, put through ingest's pipeline (face crop to 16 x 16 for
# the pixel token, flow ROI features for the default token)
TINY = SyntheticSpec(
    seed=7, size=16, subjects={"train": 3, "test_A": 2, "test_B": 2}, clips_per_subject=7,
    duration_s=(0.2, 0.3), camera=128,
)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("stores") / "tiny"
    write_store(TINY, path)
    return path


@pytest.fixture(scope="session")
def ray_session():
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a stray instance
    yield ray
    ray.shutdown()


# a CAS(ME)^3-like store for LOSO: 10 subjects in one split "all", CAS(ME)^3's emotion names
# (contempt rendered as "others"), camera-like frames through ingest's pipeline (flow features)
CASME3_LIKE = SyntheticSpec(
    seed=3, size=16, subjects={"all": 10}, clips_per_subject=7, duration_s=(0.2, 0.3), camera=128,
    labels="casme3",
)


@pytest.fixture(scope="session")
def casme3_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("stores") / "casme3-like"
    write_store(CASME3_LIKE, path)
    return path


@pytest.fixture(scope="session")
def casme3_five_subjects(tmp_path_factory):
    """The same kind of store with 5 subjects: 5 LOSO folds, for tests that run a Tune
    experiment per fold (a nested search)."""
    path = tmp_path_factory.mktemp("stores") / "casme3-like-5"
    write_store(dataclasses.replace(CASME3_LIKE, subjects={"all": 5}), path)
    return path


# an S3 server on loopback (moto), once per session, for stores and Tune storage by URI
from tests.support.s3 import s3_server  # noqa: E402,F401
