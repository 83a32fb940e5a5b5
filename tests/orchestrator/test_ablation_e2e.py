"""End to end with the real parts: Ray Tune trials, MLflow runs in SQLite, the Arrow store."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.experiment import Experiment
from orchestrator.protocols import plan
from orchestrator.runner import run_sweep
from orchestrator.workdir import Workdir
from tests.support.parents import tables_from_mlflow_alone
from storage.store import FrameStore
from tests.support.run_tree import one_parent, parent_trials, trial_runs
from trainables.config import TrainConfig, TrialConfig
from trainables.confusion_figure import confusion_png

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _local_tracking(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _runs(workdir: Path, experiment: str):
    """The experiment's trial runs (not a sweep's parent run)."""
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return client, trial_runs(client, exp.experiment_id)


def test_orch_ablation_runs_logs_and_tabulates(tiny_store, ray_session, tmp_path):
    wd = tmp_path / "work"
    args = ["ablation", "--seeds", "2", "--lengths", "4,all", "--epochs", "3", "--store", str(tiny_store),
            "--experiment", "e2e_abl", "--workdir", str(wd), "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"workdir: {wd}" in result.output and "ui --workdir" in result.output
    assert "4 trained, 0 reused" in result.output

    client, runs = _runs(wd, "e2e_abl")
    assert len(runs) == 4
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(r.info.run_name for r in runs) == ["seed0-N4", "seed0-Nall", "seed1-N4", "seed1-Nall"]  # readable
    experiment = client.get_experiment_by_name("e2e_abl")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "`orch table e2e_abl`" in experiment.tags["mlflow.note.content"]
    parent = one_parent(client, experiment.experiment_id, n_children=4)
    assert parent.info.run_name == "e2e_abl" and parent.data.tags["orch.n_trials"] == "4"
    assert parent.data.tags["orch.n_failed"] == "0" and parent.data.tags["orch.reuse_across_versions"] == "false"
    assert parent.data.tags["orch.code_digest"] == runs[0].data.tags["orch.code_digest"]
    assert parent.data.params["data.store_fingerprint"] == FrameStore(tiny_store).fingerprint
    assert parent.data.params["protocol"] == "ablation" and parent.data.params["experiment.name"] == "e2e_abl"
    assert sorted((t["seed"], t["length"]) for t in parent_trials(client, parent)) == [
        (0, "4"), (0, "all"), (1, "4"), (1, "all")]
    yaml_text = open(client.download_artifacts(parent.info.run_id, "experiment.yaml")).read()
    assert Experiment.from_dict(__import__("yaml").safe_load(yaml_text)).seeds == (0, 1)
    fingerprint = FrameStore(tiny_store).fingerprint
    assert {(r.data.params["seed"], r.data.params["length"]) for r in runs} == {
        ("0", "4"), ("0", "all"), ("1", "4"), ("1", "all")}
    for r in runs:
        p, m = r.data.params, r.data.metrics
        assert p["data.store_fingerprint"] == fingerprint
        assert p["train.epochs"] == "3" and p["model.depth"] == "5" and p["model.heads"] == "8"
        assert (p["split.train"], p["split.validation"], p["split.test.test"]) == ("train", "test_A", "test_B")
        assert p["protocol"] == "ablation" and "subjects.train" not in p
        assert 1 <= m["best_epoch"] <= 3
        for k in ("test_uf1", "test_uar", "test_acc", "best_val_uf1"):
            assert 0.0 <= m[k] <= 1.0
        history = client.get_metric_history(r.info.run_id, "val_uf1")
        assert sorted(h.step for h in history) == [1, 2, 3]
        assert m["best_val_uf1"] == max(h.value for h in history)
        # the final best_val_uf1 ends its per-epoch history (step 3), not a point at step 0 before epoch 1
        best = client.get_metric_history(r.info.run_id, "best_val_uf1")
        assert min(h.step for h in best) == 1 and max(best, key=lambda h: (h.step, h.timestamp)).value == m["best_val_uf1"]
        # the confusion figure is the run's matrix drawn with its class names (the same bytes drawn here)
        confusion = json.loads(open(client.download_artifacts(r.info.run_id, "confusion_test.json")).read())
        png = open(client.download_artifacts(r.info.run_id, "confusion_test.png"), "rb").read()
        assert png == confusion_png(confusion["matrix"], confusion["classes"], f"{r.info.run_name}: test")
        assert confusion["classes"] == p["data.classes"].split(",")

    with open(wd / "reports" / "e2e_abl" / "table4.csv") as f:
        table = {row["n_frames"]: row for row in csv.DictReader(f)}
    assert list(table) == ["4", "all"]
    for length, row in table.items():
        uf1 = [r.data.metrics["test_uf1"] for r in runs if r.data.params["length"] == length]
        uar = [r.data.metrics["test_uar"] for r in runs if r.data.params["length"] == length]
        assert int(row["n_seeds"]) == 2
        assert float(row["uf1_mean"]) == pytest.approx(np.mean(uf1))
        assert float(row["uf1_std"]) == pytest.approx(np.std(uf1, ddof=1))
        assert float(row["uar_mean"]) == pytest.approx(np.mean(uar))
        assert f"{np.mean(uf1) * 100:.2f} ±" in (wd / "reports" / "e2e_abl" / "table4.md").read_text()
    assert (wd / "reports" / "e2e_abl" / "table4.png").stat().st_size > 0
    for n in ("4", "all"):  # the confusion matrix per N, summed over seeds
        assert (wd / "reports" / "e2e_abl" / f"table4_confusion_N{n}.png").read_bytes()[:4] == b"\x89PNG"
    written = {f: (wd / "reports" / "e2e_abl" / f"table4.{f}").read_text() for f in ("md", "tex")}
    _table4_from_mlflow_alone(wd, runs, tiny_store, written)

    # the same command again reuses the finished runs: no second run per trial
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "0 trained, 4 reused" in again.output
    _, runs_after = _runs(wd, "e2e_abl")
    assert sorted(r.info.run_id for r in runs_after) == sorted(r.info.run_id for r in runs)
    # ... and its parent: still one, FINISHED again, its children the same runs
    assert one_parent(client, experiment.experiment_id, n_children=4).info.run_id == parent.info.run_id

    # a narrower invocation tabulates only its own trials
    narrow = [*args]
    narrow[narrow.index("--seeds") + 1], narrow[narrow.index("--lengths") + 1] = "1", "4"
    assert CliRunner().invoke(app, narrow).exit_code == 0
    with open(wd / "reports" / "e2e_abl" / "table4.csv") as f:
        rows = list(csv.DictReader(f))
    seed0 = next(r for r in runs if r.data.params["seed"] == "0" and r.data.params["length"] == "4")
    assert [(r["n_frames"], r["n_seeds"]) for r in rows] == [("4", "1")]
    assert float(rows[0]["uf1_mean"]) == pytest.approx(seed0.data.metrics["test_uf1"])
    # the same parent describes the latest invocation: its trial count and trials
    narrowed = one_parent(client, experiment.experiment_id, n_children=4)
    assert narrowed.info.run_id == parent.info.run_id and narrowed.data.tags["orch.n_trials"] == "1"
    assert [t["name"] for t in parent_trials(client, narrowed)] == ["seed0-N4"]
    assert open(client.download_artifacts(parent.info.run_id, "command.txt")).read().strip()  # (here: pytest's argv)


def _table4_from_mlflow_alone(wd: Path, runs, store: Path, written: dict[str, str]) -> None:
    """`orch table` in all three formats equals a hand computation from the runs (scipy and
    statsmodels on the same pairs), and the report the sweep wrote."""
    from scipy.stats import bootstrap, wilcoxon
    from statsmodels.stats.multitest import multipletests

    out = tables_from_mlflow_alone(wd, "e2e_abl", store)
    assert out["md"] == written["md"] and out["latex"] == written["tex"]  # the same report object
    m = {(r.data.params["length"], int(r.data.params["seed"])): r.data.metrics for r in runs}
    a = np.array([m[("4", s)]["test_uf1"] for s in (0, 1)])
    b = np.array([m[("all", s)]["test_uf1"] for s in (0, 1)])
    d = a - b
    p = wilcoxon(a, b).pvalue if np.any(d != 0) else np.nan
    holm = multipletests([p], method="holm")[1][0] if not np.isnan(p) else np.nan
    if len(set(d)) > 1:
        ci = bootstrap((d,), np.mean, confidence_level=0.95, rng=np.random.default_rng(0)).confidence_interval
        ci = (ci.low, ci.high)
    else:
        ci = (np.nan, np.nan)
    rows = {row["n_frames"]: row for row in csv.DictReader(out["csv"].splitlines())}
    assert list(rows) == ["4", "all"]
    for n, row in rows.items():
        uf1 = [m[(n, s)]["test_uf1"] for s in (0, 1)]
        uar = [m[(n, s)]["test_uar"] for s in (0, 1)]
        assert int(row["n_seeds"]) == 2
        assert float(row["uf1_mean"]) == pytest.approx(np.mean(uf1)) and float(row["uf1_std"]) == pytest.approx(np.std(uf1, ddof=1))
        assert float(row["uar_mean"]) == pytest.approx(np.mean(uar)) and float(row["uar_std"]) == pytest.approx(np.std(uar, ddof=1))
        cells = f"| {n} | {np.mean(uf1) * 100:.2f} ± {np.std(uf1, ddof=1) * 100:.2f} | {np.mean(uar) * 100:.2f} ± {np.std(uar, ddof=1) * 100:.2f} | 2 |"
        assert cells in out["md"]
        tex = f"{n} & {np.mean(uf1) * 100:.2f} $\\pm$ {np.std(uf1, ddof=1) * 100:.2f} & {np.mean(uar) * 100:.2f} $\\pm$ "
        assert tex in out["latex"]
    got = rows["4"]
    assert float(got["uf1_diff_vs_all"]) == pytest.approx(d.mean())
    assert float(got["uf1_wilcoxon_p_vs_all"]) == pytest.approx(p, nan_ok=True)
    assert float(got["uf1_holm_p_vs_all"]) == pytest.approx(holm, nan_ok=True)
    assert (float(got["uf1_diff_ci_low"]), float(got["uf1_diff_ci_high"])) == pytest.approx(ci, nan_ok=True)
    assert f"| {d.mean() * 100:+.2f} [" in out["md"]
    # two seeds: the smallest exact two-sided p is 0.5, so no ranking (or no test if both pairs tie)
    assert ("N = 4: not distinguishable from all frames" if not np.isnan(p) else "N = 4: no test") in out["md"]
    assert r"\caption{e2e\_abl: frame-length ablation (2 seeds, 3 epochs)}" in out["latex"]


def _counting(trained: str):
    """The real trainable, what trains it (``solo_fitter``) appending each epoch it actually
    trains to ``trained``."""

    def counting(config):
        from trainables import trainable as T

        real = T.solo_fitter

        def counted(*args, **kwargs):
            fitter = real(*args, **kwargs)
            epochs = fitter.epochs

            def logged():
                for log in epochs():
                    with open(trained, "a") as f:
                        f.write(f"{log.epoch}\n")
                    yield log
            fitter.epochs = logged
            return fitter

        T.solo_fitter = counted
        try:
            return T.train_trial(config)
        finally:
            T.solo_fitter = real

    return counting


def _trained(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()]


def _flaky(marker: str, trained: str):
    """The real trainable (counting its trained epochs), failing once right after its 3rd epoch report."""
    counting = _counting(trained)

    def flaky(config):
        from ray import tune

        from trainables import trainable as T

        if os.path.exists(marker):
            return counting(config)
        real = tune.report
        calls = {"n": 0}

        def report(metrics, checkpoint=None):
            real(metrics, checkpoint=checkpoint)
            calls["n"] += 1
            if calls["n"] == 3:
                Path(marker).touch()
                raise RuntimeError("injected failure after epoch 3")

        T.tune.report = report
        try:
            return counting(config)
        finally:
            T.tune.report = real

    return flaky


def test_failed_trial_is_retried_into_the_same_run_with_the_same_result(tiny_store, ray_session, tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    wd = Workdir.resolve(tmp_path / "work")
    base = Experiment(
        name="flaky", seeds=(1,), lengths=("4",), checkpoint_every=2, max_failures=1,
        trial=TrialConfig(train=TrainConfig(epochs=4)),
    ).with_store(str(tiny_store))
    fs = FrameStore(tiny_store)
    fp = fs.fingerprint
    trained = tmp_path / "trained-epochs"
    out = run_sweep(base, plan(base, fs), fp, wd, show_progress=False,
                    trainable=_flaky(str(tmp_path / "failed-once"), str(trained)))
    assert (tmp_path / "failed-once").exists() and out.n_errored == 0
    # the checkpoint of epoch 2 was restored: the retry trained epochs 3 and 4 only, not 1 and 2
    # again (with the restore disabled this reads [1, 2, 3, 1, 2, 3, 4])
    assert _trained(trained) == [1, 2, 3, 3, 4]
    client, runs = _runs(wd.root, "flaky")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    # the retried trial stayed the one child of the sweep's one parent
    one_parent(client, client.get_experiment_by_name("flaky").experiment_id, n_children=1)
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "val_uf1")]
    assert sorted(steps) == [1, 2, 3, 4]  # epoch 3 was trained twice, logged once

    clean = dataclasses.replace(base, name="clean")
    clean_trained = tmp_path / "clean-epochs"
    run_sweep(clean, plan(clean, fs), fp, wd, show_progress=False, trainable=_counting(str(clean_trained)))
    assert _trained(clean_trained) == [1, 2, 3, 4]
    _, clean_runs = _runs(wd.root, "clean")
    for k in ("test_uf1", "test_uar", "test_acc", "best_epoch", "best_val_uf1"):
        assert runs[0].data.metrics[k] == clean_runs[0].data.metrics[k], k


def test_store_without_a_needed_split_is_refused_before_any_trial(tmp_path):
    from storage.store import Clip, StoreWriter

    with StoreWriter(tmp_path / "s", labels=["x"], frame_shape=(4, 4)) as w:
        for split in ("train", "test_B"):
            w.add(Clip(f"c-{split}", "t", "s1", split, "x", 30.0, np.zeros((5, 4, 4), np.uint8)))
    r = CliRunner().invoke(app, ["ablation", "--store", str(tmp_path / "s"), "--workdir", str(tmp_path / "w")])
    assert r.exit_code == 2 and "'test_A'" in r.output and "validation" in r.output
    assert not (tmp_path / "w" / "ray_results").exists()


def test_more_resources_than_the_machine_has_fail_instead_of_waiting(tiny_store, ray_session, tmp_path):
    r = CliRunner().invoke(app, ["ablation", "--store", str(tiny_store), "--gpus-per-trial", "1",
                                 "--seeds", "1", "--workdir", str(tmp_path)])
    assert r.exit_code == 2 and "--gpus-per-trial 1 but this machine has 0" in r.output


def test_bad_options_fail_with_the_field_named(tmp_path):
    r = CliRunner().invoke(app, ["ablation", "--lengths", "4,eight", "--workdir", str(tmp_path)])
    assert r.exit_code == 2 and "length" in r.output and "eight" in r.output
    r = CliRunner().invoke(app, ["ablation", "--store", str(tmp_path / "nope"), "--workdir", str(tmp_path)])
    assert r.exit_code == 2 and "nope" in r.output
