"""`orch ablation --dry-run` lists every trial and the resource plan, and runs nothing:
no MLflow store, no Tune results, no benchmark build."""

import os

from typer.testing import CliRunner

from orchestrator.cli import app


def test_dry_run_lists_the_trials_and_runs_nothing(tiny_store, tmp_path):
    wd = tmp_path / "work"
    r = CliRunner().invoke(app, ["ablation", "--dry-run", "--seeds", "3", "--lengths", "4,16,all", "--store",
                                 str(tiny_store), "--workdir", str(wd)])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    names = [f"seed{s}-N{n}" for n in ("4", "16", "all") for s in range(3)]
    assert all(n in said for n in names) and "seed3-" not in said
    assert "9 trials = 3 seeds x 3 lengths (4, 16, all)" in said
    at_once = os.cpu_count() or 1
    rounds = -(-9 // at_once)
    assert f"in all {at_once} trials at once: 9 trials in {rounds} round{'s' if rounds != 1 else ''}" in said
    assert "validation='test_A' (selects the epoch)" in said
    assert not wd.exists()  # nothing trained, logged or built: not even the workdir is made


def test_dry_run_does_not_build_the_benchmark(tmp_path):
    wd = tmp_path / "work"
    r = CliRunner().invoke(app, ["ablation", "--dry-run", "--workdir", str(wd), "--cpus-per-trial", "64"])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "150 trials = 30 seeds x 5 lengths" in said and "not built yet" in said
    assert "no node can take one trial: a real run stops with an error" in said
    assert not (wd / "stores").exists() or not any((wd / "stores").iterdir())


def test_dry_run_shows_the_packs_of_seeds(tiny_store, tmp_path):
    wd = tmp_path / "work"
    r = CliRunner().invoke(app, ["ablation", "--dry-run", "--seeds", "3", "--lengths", "4,all", "--store",
                                 str(tiny_store), "--workdir", str(wd), "--pack-seeds", "2"])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "6 trials in 4 Ray Tune trials of 1-2 seeds" in said
    for pack in ("seed0-1-N4 (2)", "seed2-N4 (1)", "seed0-1-Nall (2)", "seed2-Nall (1)"):
        assert pack in said
    assert "each Tune trial needs 1 CPU" in said and ": 4 trials in 2 rounds" in said
    assert not wd.exists()


def test_bad_pack_sizes_are_refused_with_the_option_named(tiny_store, tmp_path):
    for bad in ("0", "two"):
        r = CliRunner().invoke(app, ["ablation", "--dry-run", "--store", str(tiny_store), "--workdir",
                                     str(tmp_path / "w"), "--pack-seeds", bad])
        assert r.exit_code == 2 and "pack_seeds" in r.output.replace("-", "_"), r.output


def test_auto_packs_for_this_machine_and_dropout_is_refused(tiny_store, tmp_path):
    from orchestrator import execute, seed_packs
    from orchestrator.experiment import Experiment
    from orchestrator.protocols import plan
    from storage.store import FrameStore

    wd = tmp_path / "work"
    base = ["ablation", "--dry-run", "--seeds", "3", "--lengths", "4,all", "--store", str(tiny_store),
            "--workdir", str(wd)]
    r = CliRunner().invoke(app, [*base, "--pack-seeds", "auto", "--save-yaml", str(tmp_path / "auto.yaml")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, [*base, "--pack-seeds", "auto"])
    assert r.exit_code == 0, r.output
    exp, fs = Experiment.from_yaml(tmp_path / "auto.yaml"), FrameStore(tiny_store)
    packs = execute.packs_of(exp, plan(exp, fs), fs, execute.nodes_of(None))  # local Ray: a slot per CPU
    said = " ".join(r.output.split())
    if len(packs) < 6:
        assert f"6 trials in {len(packs)} Ray Tune trials" in said and "(auto: sized by each trial's tokens" in said
        assert all(f"{seed_packs.pack_name(g)} ({len(g)})" in said for g in packs), said
    else:
        assert "packed seeds" not in said, said

    yaml_path = tmp_path / "dropout.yaml"
    r = CliRunner().invoke(app, [*base, "--pack-seeds", "2", "--save-yaml", str(yaml_path)])
    assert r.exit_code == 0, r.output
    yaml_path.write_text(yaml_path.read_text().replace("dropout: 0.0", "dropout: 0.1"))
    r = CliRunner().invoke(app, ["run", str(yaml_path), "--dry-run", "--workdir", str(wd)])
    assert r.exit_code == 2 and "packed seeds need dropout 0" in " ".join(r.output.split()), r.output


def test_a_per_fold_config_with_dropout_runs_its_seeds_solo():
    from orchestrator import seed_packs
    from orchestrator.execute import packable
    from orchestrator.experiment import Experiment
    from orchestrator.protocols import TrialPlan
    from storage.selection import Roles, Selection

    exp = Experiment(name="x")
    roles = Roles(Selection(("all",)), Selection(("all",)), {})
    plans = [TrialPlan(f"fold-{f}-seed{s}-N4", s, "4", f, roles, trial={"model": {"dropout": d}})
             for f, d in (("a", 0.0), ("b", 0.1)) for s in range(2)]
    packs = seed_packs.pack(plans, 2, lambda p: packable(exp, p))
    assert [[p.name for p in g] for g in packs] == [["fold-a-seed0-N4", "fold-a-seed1-N4"], ["fold-b-seed0-N4"],
                                                    ["fold-b-seed1-N4"]]


def test_a_nested_search_that_chose_no_dropout_packs_though_the_base_config_has_it():
    """``--pack-seeds K`` is refused only when every trial has dropout: a nested search's
    per-fold choice, not the experiment's base config, is what a fold trains with."""
    import dataclasses

    import pytest

    from orchestrator import execute
    from orchestrator.experiment import Experiment
    from orchestrator.protocols import TrialPlan
    from storage.selection import Roles, Selection

    base = Experiment(name="x")
    exp = dataclasses.replace(base, resources=dataclasses.replace(base.resources, pack_seeds=2),
                              trial=dataclasses.replace(base.trial, model=dataclasses.replace(base.trial.model,
                                                                                               dropout=0.1)))
    roles = Roles(Selection(("all",)), Selection(("all",)), {})

    def plans(dropout: float):
        return [TrialPlan(f"fold-a-seed{s}-N4", s, "4", "a", roles, trial={"model": {"dropout": dropout}})
                for s in range(2)]

    assert [len(g) for g in execute.packs_of(exp, plans(0.0), None)] == [2]
    with pytest.raises(execute.CommandError, match="model.dropout is 0.2; packed seeds need dropout 0"):
        execute.packs_of(exp, plans(0.2), None)
