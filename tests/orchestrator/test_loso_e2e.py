"""LOSO end to end on a CAS(ME)^3-like store of 10 subjects: real Ray Tune trials, an
MLflow run per fold and seed, pooled and per-fold results. Leakage is checked from the
store's subject column and each run's logged sample ids, not from orch's bookkeeping."""

import csv
import json

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from sklearn.metrics import balanced_accuracy_score, f1_score
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.experiment import Experiment
from storage.sources import casme3
from storage.store import FrameStore
from tests.support.parents import tables_from_mlflow_alone
from tests.support.run_tree import one_parent, trial_runs

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _local_tracking(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _artifact(client, run_id, path, tmp):
    return open(client.download_artifacts(run_id, path, str(tmp))).read()


def test_orch_loso_three_class_end_to_end(casme3_store, ray_session, tmp_path):
    wd = tmp_path / "work"
    r = CliRunner().invoke(app, ["loso", "--store", str(casme3_store), "--classes", "3", "--seeds", "1",
                                 "--epochs", "2", "--workdir", str(wd), "--no-progress"])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "pooled" in said and "per-fold" in said and "Pooled confusion matrix" in said
    report = (wd / "reports" / "loso" / "loso.md").read_text()
    assert "pooled UF1 (%)" in report and "per-fold UF1 (%)" in report

    store = FrameStore(casme3_store)
    subject_of = dict(zip(store.column("clip_id"), store.column("subject")))
    label_of = dict(zip(store.column("clip_id"), store.column("label")))
    subjects = set(store.column("subject"))
    assert len(subjects) == 10

    client = MlflowClient(f"sqlite:///{wd / 'mlflow.db'}")
    exp = client.get_experiment_by_name("loso")
    runs = trial_runs(client, exp.experiment_id)
    assert len(runs) == 10 and {x.info.status for x in runs} == {"FINISHED"}
    assert {x.data.params["fold"] for x in runs} == subjects  # one run per fold (x 1 seed)
    assert {x.info.run_name for x in runs} == {f"fold-{x.data.params['fold']}-seed0-N{x.data.params['length']}"
                                               for x in runs}  # readable names
    one_parent(client, exp.experiment_id, n_children=10)
    truth, pred, used = [], [], set()
    for run in runs:
        p = run.data.params
        assert p["protocol"] == "loso" and p["data.label_map"] == "casme3-3"
        assert p["data.classes"] == "negative,positive,surprise"
        logged = Experiment.from_dict(yaml.safe_load(_artifact(client, run.info.run_id, "experiment.yaml",
                                                               tmp_path / run.info.run_id)))
        assert logged.protocol.kind == "loso" and logged.trial.data.label_map == "casme3-3"
        assert logged.trial.train.epochs == 2 and logged.store == str(casme3_store)
        samples = json.loads(_artifact(client, run.info.run_id, "samples.json", tmp_path / run.info.run_id))
        role_subjects = {role: {subject_of[c] for c in samples[role]} for role in ("train", "validation")}
        test_ids = samples["tests"]["test"]
        assert {subject_of[c] for c in test_ids} == {p["fold"]}
        assert p["fold"] not in role_subjects["validation"] | role_subjects["train"]
        assert not role_subjects["train"] & role_subjects["validation"]
        assert 1 <= len(role_subjects["validation"]) <= 3  # about a fifth of the 9 training subjects
        every = samples["train"] + samples["validation"] + test_ids
        assert len(every) == len(set(every))
        assert all(label_of[c] != "others" for c in every)  # left out of the 3-class task
        used |= set(test_ids)
        rows = list(csv.DictReader(_artifact(client, run.info.run_id, "predictions_test.csv",
                                             tmp_path / run.info.run_id).splitlines()))
        assert [x["clip_id"] for x in rows] == test_ids
        classes = list(casme3.CLASSES_3)
        truth += [classes.index(x["true"]) for x in rows]
        pred += [classes.index(x["predicted"]) for x in rows]
        assert run.data.metrics["test_uf1"] == pytest.approx(
            f1_score([classes.index(x["true"]) for x in rows], [classes.index(x["predicted"]) for x in rows],
                     average="macro"))
        assert not any(k.startswith("test") for k in _tune_results(wd, run.info.run_name))
    # every clip of the 3-class task was a test clip exactly once
    assert used == {c for c in subject_of if label_of[c] != "others"}

    with open(wd / "reports" / "loso" / "loso_pooled.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["pooled_uf1"]) == pytest.approx(f1_score(truth, pred, average="macro"))
    assert float(row["pooled_uar"]) == pytest.approx(balanced_accuracy_score(truth, pred))
    fold_uf1 = [x.data.metrics["test_uf1"] for x in runs]
    assert float(row["fold_uf1_mean"]) == pytest.approx(np.mean(fold_uf1))
    assert float(row["fold_uf1_std"]) == pytest.approx(np.std(fold_uf1, ddof=1))
    assert f"{float(row['pooled_uf1']) * 100:.2f}" in said
    assert (wd / "reports" / "loso" / "loso_confusion_Nall.png").read_bytes()[:4] == b"\x89PNG"
    assert (wd / "reports" / "loso" / "loso_folds.png").read_bytes()[:4] == b"\x89PNG"  # per-fold distribution

    # Table 1 from MLflow alone, in all three formats: pooled from the predictions, per-fold from the runs
    written = {f: (wd / "reports" / "loso" / f"loso.{f}").read_text() for f in ("md", "tex")}
    out = tables_from_mlflow_alone(wd, "loso", casme3_store)
    assert out["md"] == written["md"] and out["latex"] == written["tex"]
    (t1,) = list(csv.DictReader(out["csv"].splitlines()))
    uf1, uar = f1_score(truth, pred, average="macro"), balanced_accuracy_score(truth, pred)
    fold_uar = [x.data.metrics["test_uar"] for x in runs]
    fold_avg = [(x.data.metrics["test_uf1"] + x.data.metrics["test_uar"]) / 2 for x in runs]
    assert (t1["folds"], t1["expected_folds"]) == ("10", "10")
    assert float(t1["pooled_uf1"]) == pytest.approx(uf1) and float(t1["pooled_uar"]) == pytest.approx(uar)
    assert float(t1["pooled_avg"]) == pytest.approx((uf1 + uar) / 2)
    assert float(t1["fold_uf1_mean"]) == pytest.approx(np.mean(fold_uf1))
    assert float(t1["fold_uar_std"]) == pytest.approx(np.std(fold_uar, ddof=1))
    assert float(t1["fold_avg_mean"]) == pytest.approx(np.mean(fold_avg))
    cells = (f"| all | 0 | 10 | {uf1 * 100:.2f} | {uar * 100:.2f} | {(uf1 + uar) * 50:.2f} | "
             f"{float(t1['pooled_acc']) * 100:.2f} | {np.mean(fold_uf1) * 100:.2f} ± {np.std(fold_uf1, ddof=1) * 100:.2f} | "
             f"{np.mean(fold_uar) * 100:.2f} ± {np.std(fold_uar, ddof=1) * 100:.2f} | "
             f"{np.mean(fold_avg) * 100:.2f} ± {np.std(fold_avg, ddof=1) * 100:.2f} |")
    assert cells in out["md"]
    assert cells.strip("| ").replace(" | ", " & ").replace("±", "$\\pm$") + " \\\\" in out["latex"]


def _tune_results(wd, trial_name):
    """Every metric key Ray Tune received from the trial named ``trial_name``."""
    keys = set()
    for path in (wd / "ray_results").glob("*/*/result.json"):
        for line in path.read_text().splitlines():
            result = json.loads(line)
            if result.get("config", {}).get("plan", {}).get("name") == trial_name:
                keys |= set(result)
    assert keys, f"no Tune results found for {trial_name}"
    return keys


def test_nested_loso_search_never_sees_a_folds_subject(casme3_five_subjects, ray_session, tmp_path):
    """`orch search --protocol loso`: each fold is searched on its own training and
    validation subjects, and each fold's final run uses that fold's best configuration."""
    wd = tmp_path / "work"
    space = tmp_path / "space.yaml"
    space.write_text("model.depth: {grid: [1, 2]}\n")
    r = CliRunner().invoke(app, ["search", "--protocol", "loso", "--store", str(casme3_five_subjects), "--classes", "3",
                                 "--space", str(space), "--samples", "1", "--epochs", "2", "--grace-period", "1",
                                 "--seeds", "1", "--workdir", str(wd), "--no-progress"])
    assert r.exit_code == 0, r.output
    store = FrameStore(casme3_five_subjects)
    subject_of = dict(zip(store.column("clip_id"), store.column("subject")))
    client = MlflowClient(f"sqlite:///{wd / 'mlflow.db'}")
    searched = trial_runs(client, client.get_experiment_by_name("search").experiment_id)
    assert len(searched) == 10  # 5 folds x 2 depths
    # the nested search is one sweep (one parent: every fold's search trials), the final run another
    search_parent = one_parent(client, client.get_experiment_by_name("search").experiment_id, n_children=10)
    assert search_parent.data.tags["orch.n_trials"] == "10"
    best_val: dict[str, float] = {}
    for run in searched:
        fold = run.data.params["fold"]
        samples = json.loads(_artifact(client, run.info.run_id, "samples.json", tmp_path / run.info.run_id))
        assert samples["tests"] == {}
        seen = {subject_of[c] for c in samples["train"] + samples["validation"]}
        assert fold not in seen and len(seen) == 4
        assert not any(k.startswith("test") for k in run.data.metrics)
        best_val[fold] = max(best_val.get(fold, 0.0), run.data.metrics["best_val_uf1"])
    final = trial_runs(client, client.get_experiment_by_name("search-best").experiment_id)
    assert len(final) == 5 and {x.info.status for x in final} == {"FINISHED"}
    one_parent(client, client.get_experiment_by_name("search-best").experiment_id, n_children=5)
    for run in final:
        fold, depth = run.data.params["fold"], run.data.params["model.depth"]
        # this fold's final configuration is one that scored best on this fold's validation
        chosen = [x for x in searched if x.data.params["fold"] == fold and x.data.params["model.depth"] == depth]
        assert chosen and chosen[0].data.metrics["best_val_uf1"] == best_val[fold]
    with open(wd / "reports" / "search" / "best_per_fold.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(x["held_out_subject"] for x in rows) == sorted({x.data.params["fold"] for x in final})
    assert (wd / "reports" / "search-best" / "loso.md").exists()
