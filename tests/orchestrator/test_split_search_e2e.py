"""The DFME split protocol, `orch predict` and `orch search` end to end (real Ray Tune,
MLflow, the Arrow store), and the leakage guard: test metrics never reach Tune, a search
never loads a test clip."""

import csv
import json

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.runner import Search
from storage.store import FrameStore
from tests.support.parents import tables_from_mlflow_alone
from tests.support.run_tree import one_parent, trial_runs
from trainables.fit import LeakageError
from trainables.trainable import tune_report

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _local_tracking(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _runs(wd, name):
    client = MlflowClient(f"sqlite:///{wd / 'mlflow.db'}")
    exp = client.get_experiment_by_name(name)
    return client, trial_runs(client, exp.experiment_id)


def _tune_keys(wd):
    """Every key of every result Ray Tune received in this workdir."""
    keys = set()
    for path in (wd / "ray_results").glob("*/*/result.json"):
        for line in path.read_text().splitlines():
            keys |= set(json.loads(line))
    assert keys
    return keys


def test_split_protocol_then_predict_the_submission(tiny_store, ray_session, tmp_path):
    wd = tmp_path / "work"
    r = CliRunner().invoke(app, ["split", "--store", str(tiny_store), "--seeds", "1", "--epochs", "2",
                                 "--workdir", str(wd), "--no-progress"])
    assert r.exit_code == 0, r.output
    store = FrameStore(tiny_store)
    split_of = dict(zip(store.column("clip_id"), store.column("split")))
    subject_of = dict(zip(store.column("clip_id"), store.column("subject")))
    client, runs = _runs(wd, "split")
    (run,) = runs
    m, p = run.data.metrics, run.data.params
    assert run.info.status == "FINISHED" and p["protocol"] == "split"
    for t in ("test_A", "test_B"):
        assert 0 <= m[f"{t}_uf1"] <= 1 and 0 <= m[f"{t}_uar"] <= 1 and 0 <= m[f"{t}_acc"] <= 1
    samples = json.loads(open(client.download_artifacts(run.info.run_id, "samples.json", str(tmp_path))).read())
    train_subjects = {subject_of[c] for c in samples["train"]}
    val_subjects = {subject_of[c] for c in samples["validation"]}
    assert {split_of[c] for c in samples["train"] + samples["validation"]} == {"train"}
    assert not train_subjects & val_subjects and len(val_subjects) == 1  # a fifth of 3 subjects, at least one
    assert p["subjects.validation"] == ",".join(sorted(val_subjects))
    assert not any(k.startswith("test") for k in _tune_keys(wd))
    table = (wd / "reports" / "split" / "split.md").read_text()
    assert f"{m['test_B_uf1'] * 100:.2f} ± n/a" in table and "| all | test_A |" in table
    for t in ("test_A", "test_B"):  # the confusion matrix per N and test split
        assert (wd / "reports" / "split" / f"split_confusion_Nall_{t}.png").read_bytes()[:4] == b"\x89PNG"

    # Tables 2-3 from MLflow alone, in all three formats, equal the run's own metrics
    written = {f: (wd / "reports" / "split" / f"split.{f}").read_text() for f in ("md", "tex")}
    out = tables_from_mlflow_alone(wd, "split", tiny_store)
    assert out["md"] == written["md"] and out["latex"] == written["tex"]
    rows = {x["test_split"]: x for x in csv.DictReader(out["csv"].splitlines())}
    assert sorted(rows) == ["test_A", "test_B"]
    for t, row in rows.items():
        assert row["n_frames"] == "all" and row["n_seeds"] == "1"
        for k in ("uf1", "uar", "acc"):
            assert float(row[f"{k}_mean"]) == pytest.approx(m[f"{t}_{k}"]) and row[f"{k}_std"] == "nan"
        assert (f"| all | {t} | {m[f'{t}_uf1'] * 100:.2f} ± n/a | {m[f'{t}_uar'] * 100:.2f} ± n/a | "
                f"{m[f'{t}_acc'] * 100:.2f} ± n/a | 1 |") in out["md"]
        tex_t = t.replace("_", "\\_")
        assert (f"all & {tex_t} & {m[f'{t}_uf1'] * 100:.2f} $\\pm$ n/a & {m[f'{t}_uar'] * 100:.2f} $\\pm$ n/a & "
                f"{m[f'{t}_acc'] * 100:.2f} $\\pm$ n/a & 1 \\\\") in out["latex"]

    out = tmp_path / "prediction.txt"
    r = CliRunner().invoke(app, ["predict", "--run", run.info.run_id, "--split", "test_B", "--out", str(out),
                                 "--workdir", str(wd)])
    assert r.exit_code == 0, r.output
    lines = out.read_text().splitlines()
    test_b = [str(c) for c in store.column("clip_id")[store.indices("test_B")]]
    assert len(lines) == len(test_b)
    csv_rows = list(csv.DictReader(open(client.download_artifacts(run.info.run_id, "predictions_test_B.csv",
                                                                  str(tmp_path / "p")))))
    assert [x["clip_id"] for x in csv_rows] == test_b  # store order
    assert [int(x) for x in lines] == [store.labels.index(x["predicted"]) for x in csv_rows]

    r = CliRunner().invoke(app, ["predict", "--run", "nope", "--workdir", str(wd)])
    assert r.exit_code == 2 and "--run nope: not found" in r.output


def test_search_sees_validation_only_then_reruns_the_best(tiny_store, ray_session, tmp_path):
    wd = tmp_path / "work"
    space = tmp_path / "space.yaml"
    space.write_text("train.lr: {loguniform: [0.001, 0.01]}\nmodel.depth: {grid: [1, 2]}\nmodel.heads: 2\n")
    args = ["search", "--store", str(tiny_store), "--protocol", "split", "--space", str(space), "--samples", "1",
            "--epochs", "2", "--grace-period", "1", "--seeds", "1", "--workdir", str(wd), "--no-progress"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    store = FrameStore(tiny_store)
    split_of = dict(zip(store.column("clip_id"), store.column("split")))

    client, searched = _runs(wd, "search")
    assert len(searched) == 2 and {x.data.params["model.depth"] for x in searched} == {"1", "2"}
    for run in searched:
        assert run.info.status in ("FINISHED", "KILLED")  # KILLED: stopped early by ASHA
        assert run.data.params["model.heads"] == "2" and run.data.params["search"] == "1"
        assert not any(k.startswith("test") for k in run.data.metrics)
        samples = json.loads(open(client.download_artifacts(run.info.run_id, "samples.json",
                                                            str(tmp_path / run.info.run_id))).read())
        assert samples["tests"] == {}  # no test set was loaded
        assert {split_of[c] for c in samples["train"] + samples["validation"]} == {"train"}
    assert not any(k.startswith("test") for k in _tune_keys(wd))  # nothing of a test split reached Tune
    search_parent = one_parent(client, client.get_experiment_by_name("search").experiment_id, n_children=2)
    assert search_parent.data.tags["orch.sweep_parent"].endswith("/search")
    assert search_parent.info.run_name == "search-search"

    _, rerun = _runs(wd, "search-best")
    (final,) = rerun
    assert final.info.status == "FINISHED" and "test_B_uf1" in final.data.metrics
    # the configuration re-run is one with the highest validation UF1 of the search (ties possible)
    (chosen,) = [x for x in searched if x.data.params["model.depth"] == final.data.params["model.depth"]]
    assert chosen.data.metrics["best_val_uf1"] == max(x.data.metrics["best_val_uf1"] for x in searched)
    assert float(final.data.params["train.lr"]) == pytest.approx(float(chosen.data.params["train.lr"]))
    best_yaml = (wd / "reports" / "search" / "best.yaml").read_text()

    # the same search again draws the same configurations (seeded), so it continues the
    # same runs and picks the same best: no new run anywhere
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert sorted(x.info.run_id for x in _runs(wd, "search")[1]) == sorted(x.info.run_id for x in searched)
    assert [x.info.run_id for x in _runs(wd, "search-best")[1]] == [final.info.run_id]
    assert (wd / "reports" / "search" / "best.yaml").read_text() == best_yaml
    assert one_parent(client, client.get_experiment_by_name("search").experiment_id, 2).info.run_id == \
        search_parent.info.run_id
    one_parent(client, client.get_experiment_by_name("search-best").experiment_id, n_children=1)


def test_the_guard_refuses_test_metrics_for_tune_and_test_metrics_for_search():
    with pytest.raises(LeakageError, match=r"test metrics \['test_uf1'\]"):
        tune_report({"val_uf1": 0.5, "test_uf1": 0.9})
    with pytest.raises(LeakageError, match="validation metrics only"):
        Search({}, 1, 4, metric="test_B_uf1")
    Search({}, 1, 4, metric="val_uf1")
