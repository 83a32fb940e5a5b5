"""Every clip the loader keeps can be trained on: a CAS(ME)^3-like store (30 fps) holding one
277-frame clip — the real Part A sheet's longest usable clip (spNO.152/i) — runs
`orch loso --length all` with every fold FINISHED, the model's learned positions sized from
the store. A setting that would refuse the clip (an explicit ``model.max_frames`` below it)
is named before Ray starts, in a dry run and in a real run."""

import dataclasses

import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app
from storage.sources.synthetic import SyntheticSpec
from storage.sources.synthetic.benchmark import build_clip, plan
from storage.store import FrameStore, StoreWriter
from storage.ingest import IngestOptions
from tests.support.run_tree import trial_runs

pytestmark = pytest.mark.slow

LONG = 277
SPEC = SyntheticSpec(seed=5, size=16, subjects={"all": 4}, clips_per_subject=5, fps_choices=(30,),
                     duration_s=(0.2, 0.3), camera=128, labels="casme3")


@pytest.fixture(autouse=True)
def _local_tracking(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="module")
def long_clip_store(tmp_path_factory):
    """4 subjects x 5 clips of 6-9 frames, except sub01_00: 277 frames."""
    path = tmp_path_factory.mktemp("stores") / "casme3-long-clip"
    long_spec = dataclasses.replace(SPEC, durations_from=(LONG / 30,))
    with StoreWriter(path, labels=SPEC.vocabulary, frame_shape=(SPEC.size, SPEC.size),
                     features=IngestOptions(features="flow_roi").feature_shapes) as w:
        for item in plan(SPEC):
            w.add(build_clip(long_spec if item.clip_id == "sub01_00" else SPEC, item))
    store = FrameStore(path)
    assert int(store.column("frame_count").max()) == LONG
    return path


def test_loso_all_frames_trains_every_fold_with_a_277_frame_clip(long_clip_store, ray_session, tmp_path):
    wd = tmp_path / "work"
    r = CliRunner().invoke(app, ["loso", "--store", str(long_clip_store), "--classes", "7", "--lengths", "all",
                                 "--seeds", "1", "--epochs", "1", "--workdir", str(wd), "--no-progress"])
    assert r.exit_code == 0, r.output
    client = MlflowClient(f"sqlite:///{wd / 'mlflow.db'}")
    runs = trial_runs(client, client.get_experiment_by_name("loso").experiment_id)
    assert len(runs) == 4 and {x.info.status for x in runs} == {"FINISHED"}
    assert {x.data.params["model.max_frames"] for x in runs} == {str(LONG)}  # from the store, recorded
    assert {x.data.params["model.positions"] for x in runs} == {"learned"}
    logged = yaml.safe_load((wd / "reports" / "loso" / "experiment.yaml").read_text())
    assert logged["trial"]["model"]["max_frames"] == LONG


def test_a_setting_that_would_refuse_the_long_clip_is_named_before_ray_starts(long_clip_store, tmp_path):
    saved = tmp_path / "loso.yaml"
    r = CliRunner().invoke(app, ["loso", "--store", str(long_clip_store), "--classes", "7", "--lengths", "16,all",
                                 "--seeds", "1", "--save-yaml", str(saved)])
    assert r.exit_code == 0, r.output
    exp = yaml.safe_load(saved.read_text())
    assert exp["trial"]["model"]["max_frames"] == 0  # "from the store": resolved when it is opened
    r = CliRunner().invoke(app, ["run", str(saved), "--dry-run", "--workdir", str(tmp_path / "w0")])
    assert r.exit_code == 0, r.output
    assert f"learned positions for up to {LONG} frames" in " ".join(r.output.split())

    exp["trial"]["model"]["max_frames"] = 256
    saved.write_text(yaml.safe_dump(exp))
    for dry in (["--dry-run"], []):
        wd = tmp_path / ("dry" if dry else "real")
        r = CliRunner().invoke(app, ["run", str(saved), *dry, "--workdir", str(wd), "--no-progress"])
        said = " ".join(r.output.split())
        assert r.exit_code != 0, said
        assert "length all: 1 clip(s) longer than model.max_frames=256: sub01_00 (277 frames)" in said
        assert "length 16" not in said  # 16 sampled frames fit
        assert not (wd / "ray_results").exists() and not (wd / "mlflow.db").exists()  # before Ray and MLflow

    exp["trial"]["model"]["positions"] = "normalized_time"  # positions by time: any length fits
    saved.write_text(yaml.safe_dump(exp))
    r = CliRunner().invoke(app, ["run", str(saved), "--dry-run", "--workdir", str(tmp_path / "w1")])
    assert r.exit_code == 0, r.output
