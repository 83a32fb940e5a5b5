"""Protocols turn an experiment into trials: LOSO folds and the DFME split are
subject-disjoint, validation never holds the test subject, draws are fixed by the seed,
and a search has no test set. Dry runs list the expected number of trials."""

import dataclasses
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.experiment import Experiment, Protocol
from orchestrator.protocols import ProtocolError, plan, search_plans
from storage.sources import casme3
from storage.store import Clip, FrameStore, StoreWriter
from trainables.config import DataConfig, TrialConfig

EMOTIONS = list(casme3.EMOTIONS_7)


def _store(path, subjects_by_split, clips=4, labels=EMOTIONS):
    """Blank clips, ``clips`` per subject, labels cycling through ``labels``."""
    k = 0
    with StoreWriter(path, labels=labels, frame_shape=(4, 4)) as w:
        for split, subjects in subjects_by_split.items():
            for s in subjects:
                for c in range(clips):
                    w.add(Clip(f"{s}_{c}", "t", s, split, labels[k % len(labels)], 30.0, np.zeros((3, 4, 4), np.uint8)))
                    k += 1
    return FrameStore(path)


def _exp(kind, **kw):
    proto = Protocol(kind, **kw.pop("protocol", {}))
    return Experiment(name="t", protocol=proto, trial=TrialConfig(data=DataConfig(token="pixel_diff",
                      label_map=kw.pop("label_map", "store"))), **kw)


def _subjects(store, sel, classes=None):
    classes = np.zeros(len(store), np.int64) if classes is None else classes
    return set(store.column("subject")[sel.rows(store, classes)])


def test_loso_folds_are_subject_disjoint_and_validation_never_holds_the_test_subject(tmp_path):
    subjects = [f"spNO.{i}" for i in range(1, 13)]
    store = _store(tmp_path / "s", {"all": subjects})
    exp = _exp("loso", seeds=(0, 1), lengths=("all",))
    plans = plan(exp, store)
    assert len(plans) == 12 * 2
    assert {p.fold for p in plans} == set(subjects)
    for p in plans:
        train, val, test = (_subjects(store, s) for s in (p.roles.train, p.roles.validation, p.roles.tests["test"]))
        assert test == {p.fold}
        assert not (train & val) and not (train & test) and not (val & test)
        assert train | val | test == set(subjects)
        assert len(val) == round(11 * 0.2)  # a fifth of the training subjects
    # deterministic per seed, different across seeds
    assert plan(exp, store) == plans
    val0 = {p.fold: p.roles.validation.subjects for p in plans if p.seed == 0}
    val1 = {p.fold: p.roles.validation.subjects for p in plans if p.seed == 1}
    assert val0 != val1


def test_loso_3_class_leaves_out_subjects_with_only_others(tmp_path):
    store = _store(tmp_path / "t", {"all": ["a", "b", "c"]}, clips=1, labels=EMOTIONS)
    # subjects: a=happy, b=anger, c=fear (one clip each) -> 3 folds under 3 classes
    exp = _exp("loso", seeds=(0,), lengths=("all",), label_map="casme3-3")
    assert len(plan(exp, store)) == 3
    only_others = _store(tmp_path / "u", {"all": ["a", "b", "c", "d"]}, clips=1,
                         labels=["others", "happy", "anger", "fear", "disgust", "sad", "surprise"])
    folds = {p.fold for p in plan(exp, only_others)}
    assert folds == {"b", "c", "d"}  # subject a has only an 'others' clip: no fold of the 3-class task


def test_dfme_split_divides_the_train_subjects_per_seed(tmp_path):
    store = _store(tmp_path / "s", {"train": [f"t{i}" for i in range(10)], "test_A": ["a1", "a2"],
                                    "test_B": ["b1", "b2"]})
    exp = _exp("split", seeds=(0, 1, 2), lengths=("all",))
    plans = plan(exp, store)
    assert [p.name for p in plans] == ["seed0-Nall", "seed1-Nall", "seed2-Nall"]
    vals = []
    for p in plans:
        train, val = _subjects(store, p.roles.train), _subjects(store, p.roles.validation)
        assert not (train & val) and train | val == {f"t{i}" for i in range(10)} and len(val) == 2
        assert sorted(p.roles.tests) == ["test_A", "test_B"]
        assert _subjects(store, p.roles.tests["test_B"]) == {"b1", "b2"}
        vals.append(val)
    assert len({frozenset(v) for v in vals}) > 1  # drawn per seed


def test_validation_never_takes_every_training_subject(tmp_path):
    store = _store(tmp_path / "s", {"train": ["t1", "t2"], "test_A": ["a"], "test_B": ["b"]})
    (p,) = plan(_exp("split", seeds=(0,), lengths=("all",), protocol={"validation_fraction": 0.9}), store)
    assert len(p.roles.train.subjects) == 1 and len(p.roles.validation.subjects) == 1
    store = _store(tmp_path / "l", {"all": ["a", "b", "c"]})
    for p in plan(_exp("loso", seeds=(0,), lengths=("all",), protocol={"validation_fraction": 0.9}), store):
        assert len(p.roles.train.subjects) == 1 and len(p.roles.validation.subjects) == 1


def test_search_plans_have_no_test_set_and_loso_searches_each_fold_without_its_subject(tmp_path):
    store = _store(tmp_path / "s", {"train": [f"t{i}" for i in range(10)], "test_A": ["a1"], "test_B": ["b1"]})
    (split_search,) = search_plans(_exp("split", seeds=(0,), lengths=("all",)), store)
    assert split_search.roles.tests == {}
    train, val = _subjects(store, split_search.roles.train), _subjects(store, split_search.roles.validation)
    assert not train & val and train | val == {f"t{i}" for i in range(10)}
    loso = _exp("loso", seeds=(3, 4), lengths=("all", "8"))
    folds = search_plans(loso, store)
    assert {p.fold for p in folds} == {f"t{i}" for i in range(10)} | {"a1", "b1"} and len(folds) == 12
    final = {(p.fold, p.seed): p for p in plan(loso, store) if p.length == "all"}
    for p in folds:
        assert p.roles.tests == {} and p.seed == 3 and p.length == "all"
        assert p.fold not in _subjects(store, p.roles.train) | _subjects(store, p.roles.validation)
        # the fold's search uses exactly the fold's own training and validation subjects
        assert p.roles.train == final[(p.fold, 3)].roles.train
        assert p.roles.validation == final[(p.fold, 3)].roles.validation


def test_protocol_errors_name_the_problem(tmp_path):
    store = _store(tmp_path / "s", {"train": ["t1"], "test_B": ["b1"]})
    with pytest.raises(ProtocolError, match="'test_A'"):
        plan(_exp("ablation", seeds=(0,)), store)
    with pytest.raises(ProtocolError, match="at least 2"):
        plan(_exp("split", seeds=(0,), protocol={"test_splits": ("test_B",)}), store)
    with pytest.raises(ProtocolError, match="LOSO needs at least 3 subjects"):
        plan(_exp("loso", seeds=(0,)), store)


def _said(r):
    assert r.exit_code == 0, r.output
    return " ".join(r.output.split())


def test_dry_run_lists_the_expected_number_of_trials_for_each_protocol(tmp_path):
    _store(tmp_path / "s", {"train": [f"t{i}" for i in range(5)], "test_A": ["a1", "a2"], "test_B": ["b1", "b2"]})
    wd = tmp_path / "work"
    common = ["--store", str(tmp_path / "s"), "--workdir", str(wd), "--token", "pixel_diff", "--dry-run"]
    at_once = os.cpu_count() or 1

    said = _said(CliRunner().invoke(app, ["loso", "--seeds", "2", *common]))
    assert "18 trials = 9 folds x 2 seeds x 1 lengths" in said
    assert "fold-t0-seed0-Nall" in said and "fold-b2-seed1-Nall" in said
    rounds = -(-18 // at_once)
    assert f"in all {at_once} trials at once: 18 trials in {rounds} round{'s' if rounds != 1 else ''}" in said

    said = _said(CliRunner().invoke(app, ["split", "--seeds", "3", "--lengths", "8,all", *common]))
    assert "6 trials = 3 seeds x 2 lengths (8, all)" in said and "seed2-N8" in said
    assert "tests='test_A', 'test_B'" in said

    said = _said(CliRunner().invoke(app, ["ablation", "--seeds", "2", "--lengths", "4,all", *common]))
    assert "4 trials = 2 seeds x 2 lengths (4, all)" in said

    space = tmp_path / "space.yaml"
    space.write_text("train.lr: {loguniform: [0.001, 0.01]}\nmodel.depth: {grid: [1, 2]}\n")
    said = _said(CliRunner().invoke(app, ["search", "--space", str(space), "--samples", "3", "--seeds", "2", *common]))
    assert "6 search trials (3 samples x 2 grid points" in said and "no test set" in said
    assert "then 2 trials of the best configuration (split, 2 seeds)" in said
    said = _said(CliRunner().invoke(app, ["search", "--protocol", "loso", "--space", str(space), "--samples", "1",
                                          *common]))
    assert "18 search trials (1 samples x 2 grid points x 9 folds" in said and "(nested)" in said
    assert "then 45 trials of the best configurations (loso, 5 seeds)" in said
    r = CliRunner().invoke(app, ["search", "--space", str(space), "--samples", "1", "--epochs", "3",
                                 "--grace-period", "4", *common])
    assert r.exit_code == 2 and "search.grace_period: between 1 and the epochs (3), got 4" in r.output
    grid = tmp_path / "grid.yaml"
    grid.write_text("model.depth: {grid: [1, 2]}\n")
    r = CliRunner().invoke(app, ["search", "--space", str(grid), "--samples", "2", *common])
    assert r.exit_code == 2 and "no random domain" in " ".join(r.output.split())

    # the search is part of the experiment: written as YAML, run (dry) from it
    y = tmp_path / "search.yaml"
    r = CliRunner().invoke(app, ["search", "--space", str(space), "--samples", "3", "--seeds", "2",
                                 *common[:-1], "--save-yaml", str(y)])
    assert r.exit_code == 0, r.output
    exp = Experiment.from_yaml(y)
    assert exp.search.samples == 3 and exp.search.space["model.depth"] == {"grid": [1, 2]}
    assert Experiment.from_dict(exp.to_dict()) == exp
    said = _said(CliRunner().invoke(app, ["run", str(y), "--dry-run", "--workdir", str(wd)]))
    assert "6 search trials (3 samples x 2 grid points" in said
    assert not wd.exists()  # a dry run writes nothing


def test_experiment_yaml_round_trip_and_orch_run(tmp_path):
    store = _store(tmp_path / "s", {"all": [f"s{i}" for i in range(6)]})
    y = tmp_path / "loso.yaml"
    r = CliRunner().invoke(app, ["loso", "--store", str(tmp_path / "s"), "--classes", "7", "--seeds", "3",
                                 "--token", "pixel_diff", "--epochs", "7", "--save-yaml", str(y)])
    assert r.exit_code == 0, r.output
    exp = Experiment.from_yaml(y)
    assert exp.protocol.kind == "loso" and exp.seeds == (0, 1, 2) and exp.trial.train.epochs == 7
    assert exp.trial.data.label_map == "casme3-7" and exp.trial.data.store == str(tmp_path / "s")
    again = tmp_path / "again.yaml"
    again.write_text(exp.to_yaml())
    assert Experiment.from_yaml(again) == exp
    said = _said(CliRunner().invoke(app, ["run", str(y), "--dry-run", "--workdir", str(tmp_path / "w")]))
    assert "18 trials = 6 folds x 3 seeds x 1 lengths" in said and "labels: casme3-7" in said
    assert store.fingerprint[:12] in said


@pytest.mark.parametrize("text,message", [
    ("name: x\nseeds: 2\nprotocol: {kind: nested}\n", "protocol.kind: 'nested' is not one of"),
    ("name: x\ntrial: {train: {epochs: many}}\n", "trial.train.epochs: expected int, got 'many'"),
    ("name: x\ntrial: {train: {lr: 0.01, momentum: 0.9}}\n", r"train\.: unknown field\(s\) \['momentum'\]"),
    ("name: x\nsede: 3\n", r"unknown field\(s\) \['sede'\]"),
    ("name: x\nprotocol: {kind: split, validation_fraction: 1.5}\n", "protocol.validation_fraction: must be between"),
    ("name: x\nlengths: [4, three]\n", "length: expected a positive integer or 'all', got 'three'"),
    ("name: x\nseeds: [0, 0]\n", "seeds: duplicates"),
    ("name: [unclosed\n", "not valid YAML"),
    ("name: x\nprotocol: {kind: loso, use_splits: all}\n", "protocol.use_splits: expected a list of split names"),
    ("name: x\ncheckpoint_every: '5'\n", "checkpoint_every: expected int, got '5'"),
    ("name: x\nsave_model: yes please\n", "save_model: expected bool"),
    ("name: 5\n", "name: expected str, got 5"),
    ("name: x\nstore: null\n", "store: a value is needed"),
    ("name: x\nprotocol: {kind: split, test_splits: [A, test_A]}\n", "would share metric names"),
    ("name: x\nsearch: {space: {train.lr: 0.1}}\n", "search: a search runs before the split or loso protocol"),
    ("name: x\nprotocol: {kind: split}\nsearch: {space: {train.lr: {uniform: [1, 0]}}}\n",
     r"search.space: train.lr: uniform takes \[low, high\]"),
    ("name: x\nprotocol: {kind: split}\nsearch: {space: {train.lr: 0.1}, samples: 0}\n", "search.samples: a positive"),
])
def test_bad_experiment_files_name_the_file_and_field(tmp_path, text, message):
    y = tmp_path / "bad.yaml"
    y.write_text(text)
    with pytest.raises(ValueError, match=message) as e:
        Experiment.from_yaml(y)
    assert str(y) in str(e.value)
    r = CliRunner().invoke(app, ["run", str(y), "--dry-run", "--workdir", str(tmp_path / "w")])
    assert r.exit_code == 2 and "bad.yaml" in r.output


def test_experiment_defaults_are_the_papers_and_roles_are_explicit():
    exp = Experiment()
    assert exp.protocol.kind == "ablation" and exp.lengths == ("4", "8", "12", "16", "all") and len(exp.seeds) == 30
    assert exp.protocol.roles_text() == "train='train', validation='test_A' (selects the epoch), test='test_B'"
    assert Protocol("split").test_splits == ("test_A", "test_B")
    with pytest.raises(ValueError, match="train, validation and test splits must differ"):
        Protocol("ablation", validation_split="test_B")
    assert dataclasses.replace(exp, name="b").sweep_key("f") != exp.sweep_key("f")


def test_every_training_command_spells_the_frame_lengths_lengths(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("train.lr: {loguniform: [0.001, 0.01]}\n")
    extra = {"ablation": [], "loso": [], "split": [], "search": ["--space", str(space)]}
    for command, more in extra.items():
        y = tmp_path / f"{command}.yaml"
        r = CliRunner().invoke(app, [command, *more, "--lengths", "4,all", "--save-yaml", str(y)])
        assert r.exit_code == 0, (command, r.output)
        assert Experiment.from_yaml(y).lengths == ("4", "all"), command
        r = CliRunner().invoke(app, [command, *more, "--length", "4", "--save-yaml", str(y)])
        assert r.exit_code == 2 and "No such option" in r.output, (command, r.output)
