"""`orch table` from the tracking store alone, on runs written here with MlflowClient as
orch writes them (trial runs, their confusion matrices, a sweep parent per the contract):
Table 1 pooled and per-fold against a hand computation, a failed fold flagged, class names
LaTeX-escaped, and every refusal clear. The same command on real sweeps: the e2e tests."""

import csv
import io
import json

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.experiment import Experiment, Protocol
from tests.support.parents import ensure_parent
from trainables.tracking import CODE_DIGEST_TAG, SWEEP_KEY_TAG

CLASSES = "happy&sad,neutral_x,surprise"
# fold A: one class, one clip mistaken; fold B: one positive clip predicted as surprise (test_loso_report's example)
FOLDS = {"A": ([[2, 1, 0], [0, 0, 0], [0, 0, 0]], 0.4, 2 / 3, 2 / 3),
         "B": ([[0, 0, 0], [0, 1, 1], [0, 0, 1]], 2 / 3, 0.75, 2 / 3)}


@pytest.fixture(autouse=True)
def _local_tracking(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _trial(client, exp_id, exp, name, fold, status, cm=None, scores=None):
    run = client.create_run(exp_id, run_name=name, tags={SWEEP_KEY_TAG: "lo_so:loso:k", CODE_DIGEST_TAG: "c0de"})
    rid = run.info.run_id
    for k, v in {"seed": "0", "length": "all", "fold": fold, "data.classes": CLASSES, "code.version": "0.1.0",
                 "data.store_fingerprint": "f00"}.items():
        client.log_param(rid, k, v)
    client.log_text(rid, exp.to_yaml(), "experiment.yaml")
    if cm is not None:
        uf1, uar, acc = scores
        for k, v in {"test_uf1": uf1, "test_uar": uar, "test_acc": acc, "best_epoch": 1.0}.items():
            client.log_metric(rid, k, v)
        client.log_text(rid, json.dumps({"classes": CLASSES.split(","), "matrix": cm}), "confusion_test.json")
    client.set_terminated(rid, status)
    return rid


@pytest.fixture
def loso_runs(tmp_path):
    wd = tmp_path / "work"
    wd.mkdir()
    uri = f"sqlite:///{wd / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = Experiment(name="lo_so", protocol=Protocol("loso"), seeds=(0,), lengths=("all",))
    exp_id = client.create_experiment("lo_so", artifact_location=(wd / "mlartifacts").as_uri())
    for fold, (cm, uf1, uar, acc) in FOLDS.items():
        _trial(client, exp_id, exp, f"fold-{fold}-seed0-Nall", fold, "FINISHED", cm, (uf1, uar, acc))
    _trial(client, exp_id, exp, "fold-C-seed0-Nall", "C", "FAILED")
    return wd, uri, client, exp_id


def _table(wd, *args):
    return CliRunner().invoke(app, ["table", *args, "--workdir", str(wd)])


def test_table1_pooled_and_per_fold_with_the_failed_fold_flagged(loso_runs):
    wd, uri, client, exp_id = loso_runs
    r = _table(wd, "lo_so")
    assert r.exit_code == 2 and "no sweep parent run" in r.output and "older orch" in r.output
    ensure_parent(uri, "lo_so")

    r = _table(wd, "lo_so", "--format", "csv")
    assert r.exit_code == 0, r.output
    (row,) = list(csv.DictReader(io.StringIO(r.stdout)))
    # pooled: the summed matrix [[2,1,0],[0,1,1],[0,0,1]]: F1 0.8, 0.5, 2/3; recall 2/3, 1/2, 1
    uf1, uar = (0.8 + 0.5 + 2 / 3) / 3, (2 / 3 + 1 / 2 + 1) / 3
    assert float(row["pooled_uf1"]) == pytest.approx(uf1) and float(row["pooled_uar"]) == pytest.approx(uar)
    assert float(row["pooled_avg"]) == pytest.approx((uf1 + uar) / 2)
    assert float(row["pooled_acc"]) == pytest.approx(4 / 6)
    # per fold: UF1 0.4 and 2/3, UAR 2/3 and 0.75; the std of two values is |a - b| / sqrt(2)
    assert float(row["fold_uf1_mean"]) == pytest.approx((0.4 + 2 / 3) / 2)
    assert float(row["fold_uf1_std"]) == pytest.approx((2 / 3 - 0.4) / 2 ** 0.5)
    assert float(row["fold_uar_mean"]) == pytest.approx((2 / 3 + 0.75) / 2)
    assert float(row["fold_avg_mean"]) == pytest.approx(((0.4 + 2 / 3) / 2 + (2 / 3 + 0.75) / 2) / 2)
    assert (row["folds"], row["expected_folds"]) == ("2", "3")

    md = _table(wd, "lo_so").stdout
    assert f"| all | 0 | 2 of 3 (incomplete) | {uf1 * 100:.2f} | {uar * 100:.2f} | {(uf1 + uar) * 50:.2f} |" in md
    assert "n = 2 of 3 folds; 1 without a finished run: fold-C-seed0-Nall (FAILED)" in md
    assert "| happy&sad | 2 | 1 | 0 |" in md
    tex = _table(wd, "lo_so", "--format", "latex").stdout
    assert r"\caption{lo\_so: LOSO, 3 subjects" in tex and r"happy\&sad & 2 & 1 & 0 \\" in tex
    assert r"neutral\_x" in tex and f"{(0.4 + 2 / 3) * 50:.2f} $\\pm$ " in tex

    out = wd / "t1.tex"
    r = _table(wd, "lo_so", "--format", "latex", "--out", str(out))
    assert r.exit_code == 0 and out.read_text() == tex and r.stdout == ""


def test_refusals_say_what_to_do(loso_runs):
    wd, uri, client, exp_id = loso_runs
    ensure_parent(uri, "lo_so")
    r = _table(wd, "nope")
    assert r.exit_code == 2 and "no MLflow experiment 'nope'" in r.output and "lo_so" in r.output
    r = _table(wd, "lo_so", "--format", "html")
    assert r.exit_code == 2 and "--format 'html': one of md, latex, csv" in r.output
    r = _table(wd, "lo_so", "--sweep", "other")
    assert r.exit_code == 2 and "no sweep 'other'" in r.output and "lo_so:loso:k" in r.output
    r = _table(wd.parent / "empty", "lo_so")
    assert r.exit_code == 2 and "no tracking store" in r.output
    # a second sweep: the newest is used, and the others are named
    second = client.create_run(exp_id, run_name="lo_so", tags={"orch.run_kind": "sweep", "orch.sweep_parent": "new:k"})
    client.log_text(second.info.run_id, Experiment(name="lo_so", protocol=Protocol("loso"), seeds=(0,),
                                                   lengths=("all",)).to_yaml(), "experiment.yaml")
    client.log_text(second.info.run_id, "[]", "trials.json")
    r = CliRunner().invoke(app, ["table", "lo_so", "--workdir", str(wd)])
    assert r.exit_code == 0, r.output
    assert "sweep new:k" in r.stderr and "other sweeps: lo_so:loso:k" in r.stderr
    r = _table(wd, "lo_so", "--sweep", "lo_so:loso:k", "--format", "csv")
    assert r.exit_code == 0 and "pooled_uf1" in r.stdout and "other sweeps: new:k" in r.stderr


def test_the_report_is_logged_on_the_parent_under_reports(loso_runs):
    from orchestrator.reports import log_on_parent
    from orchestrator.reports.from_mlflow import rebuild

    wd, uri, client, exp_id = loso_runs
    pid = ensure_parent(uri, "lo_so")
    got = rebuild(uri, "lo_so")
    log_on_parent(uri, pid, got.report)
    logged = {a.path for a in client.list_artifacts(pid, "reports")}
    assert {"reports/loso.md", "reports/loso.tex", "reports/loso_pooled.csv", "reports/loso_folds.csv",
            "reports/loso_confusion_Nall.png", "reports/loso_folds.png"} <= logged
    with open(client.download_artifacts(pid, "reports/loso.md", str(wd))) as f:
        assert f.read() == got.report.markdown()


def test_an_outage_is_waited_out_not_taken_for_a_missing_confusion_matrix(tmp_path, monkeypatch):
    """A fold whose matrix cannot be read for a moment (the tracking server restarting) is
    read once it answers — never left out of the pooled matrix as if it had none; a run
    without the file (an unlabelled test split) gives None."""
    from mlflow import MlflowClient

    from orchestrator.reports.runs import ConfusionReader

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    eid = client.create_experiment("cm", artifact_location=(tmp_path / "art").as_uri())
    run = client.create_run(eid).info.run_id
    client.log_text(run, json.dumps({"matrix": [[2, 1], [0, 3]]}), "confusion_test.json")
    reader = ConfusionReader(uri)
    real, calls = reader.client.list_artifacts, []

    def flaky(run_id, *a):
        calls.append(run_id)
        if len(calls) == 1:
            raise ConnectionError("tracking server restarting")
        return real(run_id, *a)

    monkeypatch.setattr(reader.client, "list_artifacts", flaky)
    assert reader(run, "test").tolist() == [[2, 1], [0, 3]] and len(calls) == 2
    assert reader(run, "test_B") is None
