"""Packed seeds end to end (``--pack-seeds``): real Ray Tune trials, MLflow runs in SQLite,
the Arrow store. One sweep packs three seeds into one Tune trial that fails mid-training and
is retried; the same trials run solo; each member's run equals its solo run, to the last bit."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator import seed_packs
from orchestrator.experiment import Experiment, Resources
from orchestrator.protocols import plan
from orchestrator.runner import run_sweep
from orchestrator.workdir import Workdir
from storage.store import FrameStore
from tests.support.run_tree import one_parent, trial_runs
from trainables.config import TrainConfig, TrialConfig

pytestmark = pytest.mark.slow

@pytest.fixture(autouse=True)
def _local_tracking(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _flaky_pack(marker: str, trained: str):
    """The real trainable; its PackedFitter appends each epoch it trains (and for how many
    members) to ``trained``, and the trial fails once right after its 3rd report."""

    def flaky(config):
        from ray import tune

        from trainables import pack_trial as P
        from trainables import trainable as T

        real_fitter, real_report = P.PackedFitter, T.tune.report

        class Counting(real_fitter):
            def _one_epoch(self, epoch):
                logs = super()._one_epoch(epoch)
                with open(trained, "a") as f:
                    f.write(f"{epoch}x{len(logs)}\n")
                return logs

        calls = {"n": 0}

        def report(metrics, checkpoint=None):
            real_report(metrics, checkpoint=checkpoint)
            calls["n"] += 1
            if calls["n"] == 3 and not os.path.exists(marker):
                Path(marker).touch()
                raise RuntimeError("injected failure after epoch 3")

        P.PackedFitter, T.tune.report = Counting, report
        try:
            return T.train_trial(config)
        finally:
            P.PackedFitter, T.tune.report = real_fitter, real_report
            tune.report = real_report

    return flaky


def _by_seed(client, experiment: str) -> dict[int, object]:
    exp = client.get_experiment_by_name(experiment)
    return {int(r.data.params["seed"]): r for r in trial_runs(client, exp.experiment_id)}


def test_packed_members_equal_their_solo_trials_through_a_retry(tiny_store, ray_session, tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    wd = Workdir.resolve(tmp_path / "work")
    fs = FrameStore(tiny_store)
    packed = Experiment(
        name="packed", seeds=(0, 1, 2), lengths=("4",), checkpoint_every=2, max_failures=1,
        trial=TrialConfig(train=TrainConfig(epochs=4)), resources=Resources(pack_seeds=3),
    ).with_store(str(tiny_store))
    trained = tmp_path / "trained-epochs"
    out = run_sweep(packed, plan(packed, fs), fs.fingerprint, wd, show_progress=False,
                    packs=seed_packs.pack(plan(packed, fs), 3),
                    trainable=_flaky_pack(str(tmp_path / "failed-once"), str(trained)))
    assert (tmp_path / "failed-once").exists() and out.n_errored == 0 and out.n_trials == 3
    # one Tune trial for the three seeds; the retry restored the pack's checkpoint of epoch 2 and
    # trained epochs 3 and 4 of every member (without the restore: 1, 2, 3, 1, 2, 3, 4)
    assert trained.read_text().split() == ["1x3", "2x3", "3x3", "3x3", "4x3"]

    client = MlflowClient(wd.tracking_uri)
    runs = _by_seed(client, "packed")
    assert sorted(runs) == [0, 1, 2] and {r.info.status for r in runs.values()} == {"FINISHED"}
    one_parent(client, client.get_experiment_by_name("packed").experiment_id, n_children=3)
    for r in runs.values():  # each seed its own run, its own epochs (epoch 3 trained twice, logged once)
        assert [m.step for m in client.get_metric_history(r.info.run_id, "val_uf1")] == [1, 2, 3, 4]
        assert r.data.tags["orch.pack"] == "3 seeds: 0,1,2" and r.info.run_name == f"seed{r.data.params['seed']}-N4"

    solo = dataclasses.replace(packed, name="solo", resources=Resources())
    run_sweep(solo, plan(solo, fs), fs.fingerprint, wd, show_progress=False)
    alone = _by_seed(client, "solo")
    for seed, r in runs.items():
        s = alone[seed]
        assert s.data.tags["orch.pack"] == ""
        assert r.data.metrics["best_epoch"] == s.data.metrics["best_epoch"], seed
        for k in ("test_uf1", "test_uar", "test_acc", "best_val_uf1"):  # a solo trial is a pack of one:
            assert r.data.metrics[k] == s.data.metrics[k], (seed, k)  # the same arithmetic, bit for bit
        for k in ("val_uf1", "train_loss"):
            got = [m.value for m in sorted(client.get_metric_history(r.info.run_id, k), key=lambda m: m.step)]
            want = [m.value for m in sorted(client.get_metric_history(s.info.run_id, k), key=lambda m: m.step)]
            assert got == want, (seed, k)
        pred = [open(client.download_artifacts(x.info.run_id, "predictions_test.csv")).read() for x in (r, s)]
        assert pred[0] == pred[1], seed  # the same best-epoch model predicts the same classes

    # the identity is per seed: the packed sweep on the solo experiment reuses every seed's run
    again = run_sweep(dataclasses.replace(solo, resources=Resources(pack_seeds=3)), plan(solo, fs), fs.fingerprint,
                      wd, show_progress=False, packs=seed_packs.pack(plan(solo, fs), 3))
    assert (again.n_trials, again.n_reused, again.n_errored) == (3, 3, 0)
    assert {r.info.run_id for r in _by_seed(client, "solo").values()} == {r.info.run_id for r in alone.values()}
