"""Which trials share a pack, how packs are named, and what ``--pack-seeds auto`` picks."""

import numpy as np
import pytest

from orchestrator import seed_packs
from orchestrator.protocols import TrialPlan
from storage.selection import Roles, Selection

ROLES = Roles(Selection(("train",)), Selection(("test_A",)), {"test": Selection(("test_B",))})


def _plans(seeds, lengths=("4",), folds=("",)):
    return [TrialPlan((f"fold-{f}-" if f else "") + f"seed{s}-N{n}", s, n, f, ROLES)
            for f in folds for n in lengths for s in seeds]


def test_only_seeds_of_the_same_length_fold_and_config_share_a_pack():
    plans = _plans(range(3), ("4", "all"), ("s1", "s2"))
    packs = seed_packs.pack(plans, 2)
    assert [[p.name for p in g] for g in packs][:2] == [["fold-s1-seed0-N4", "fold-s1-seed1-N4"], ["fold-s1-seed2-N4"]]
    assert len(packs) == 8 and all(len({(p.length, p.fold) for p in g}) == 1 for g in packs)
    own = [TrialPlan(p.name, p.seed, p.length, p.fold, p.roles, trial={"x": p.seed % 2}) for p in _plans(range(4))]
    assert [[p.seed for p in g] for g in seed_packs.pack(own, 4)] == [[0, 2], [1, 3]]  # own configs apart
    with pytest.raises(ValueError, match="at least 1"):
        seed_packs.pack(plans, 0)


def test_pack_names_say_the_seeds():
    assert seed_packs.pack_name(_plans(range(10))) == "seed0-9-N4"
    assert seed_packs.pack_name(_plans((0, 2, 5), ("all",))) == "seed0,2,5-Nall"
    assert seed_packs.pack_name(_plans(range(3), folds=("s01",))) == "fold-s01-seed0-2-N4"
    assert seed_packs.pack_name(_plans((7,))) == "seed7-N4"
    d = seed_packs.pack_dict(_plans(range(2)))
    assert d["name"] == "seed0-1-N4" and [m["seed"] for m in d["members"]] == [0, 1] and d["length"] == "4"


COST = {"4": 5.0, "8": 9.0, "12": 13.0, "16": 17.0, "all": 40.0}  # tokens per clip: N + 1, "all" longer


def _names(packs):
    return [seed_packs.pack_name(g) for g in packs]


def test_auto_with_equal_costs_fills_every_slot_with_the_fewest_packs():
    ablation = _plans(range(30), ("4", "8", "12", "16", "all"))  # the default: 5 groups of 30 seeds
    packs = seed_packs.balanced(ablation, 2, lambda g: float(len(g)), overhead_s=0.1)
    # 20 packs of 7 or 8 seeds end both slots together, at 75 trials' time (packs of 10: one slot
    # trains 80 while the other idles at the end; packs of 5: 30 Tune trials for the same 75)
    assert len(packs) == 20 and {len(g) for g in packs} == {7, 8}
    assert sorted(p.name for g in packs for p in g) == sorted(p.name for p in ablation)  # each once
    assert all(len({(p.length, p.fold) for p in g}) == 1 for g in packs)
    one = seed_packs.balanced(ablation, 1, lambda g: float(len(g)), overhead_s=0.1)
    assert len(one) == 15 and {len(g) for g in one} == {seed_packs.AUTO_MAX}  # one slot: the largest packs
    assert {len(g) for g in seed_packs.balanced(ablation, 1, lambda g: float(len(g)), largest=15, overhead_s=0.1)} == {15}
    assert len(seed_packs.balanced(ablation, 150, lambda g: float(len(g)), overhead_s=0.1)) == 150  # a slot per trial


def test_auto_packs_costly_trials_finer_than_cheap_ones():
    # the DFME-size case that one pack per N lost (docs/PERFORMANCE.md): the N = 16 pack took
    # 68 while the N = 4 pack's slot idled after 20
    plans = _plans(range(4), ("4", "16"))
    packs = seed_packs.balanced(plans, 2, lambda g: sum(COST[p.length] for p in g), overhead_s=1.0)
    assert _names(packs) == ["seed0-1-N16", "seed2-3-N16", "seed0-1-N4", "seed2-3-N4"]  # 44 + 2 on each slot
    # when a Tune trial costs much more than training, one pack per N is still the answer
    assert _names(seed_packs.balanced(plans, 2, lambda g: sum(COST[p.length] for p in g), overhead_s=50.0)) == [
        "seed0-3-N16", "seed0-3-N4"]

    ablation = _plans(range(30), ("4", "8", "12", "16", "all"))
    packs = seed_packs.balanced(ablation, 2, lambda g: sum(COST[p.length] for p in g), overhead_s=2.0)
    biggest = {n: max(len(g) for g in packs if g[0].length == n) for n in COST}
    assert biggest["all"] < biggest["16"] and biggest["4"] == seed_packs.AUTO_MAX
    times = [sum(COST[p.length] for p in g) + 2.0 for g in packs]
    assert times == sorted(times, reverse=True)  # the costliest first: Tune starts them in this order
    assert seed_packs._schedule_length(times, 2) <= 1.01 * sum(times) / 2  # both slots end together


def test_auto_leaves_solo_what_cannot_pack():
    plans = _plans(range(3), ("4", "all"))
    dropout = seed_packs.balanced(plans, 1, lambda g: float(len(g)), packable=lambda p: p.length == "4", overhead_s=0.1)
    assert sorted(_names(dropout)) == sorted(["seed0-2-N4", "seed0-Nall", "seed1-Nall", "seed2-Nall"])
    solo = [[p.name] for p in plans]
    assert [[p.name for p in g] for g in seed_packs.balanced(plans, 0, lambda g: float(len(g)))] == solo  # no slot yet
    assert [[p.name for p in g] for g in seed_packs.balanced(_plans((0,), ("4", "all")), 2, lambda g: float(len(g)))] == [
        ["seed0-N4"], ["seed0-Nall"]]  # one seed per group: nothing to pack


def test_pack_seconds_count_each_train_clip_s_tokens(tiny_store):
    from storage.selection import label_map
    from storage.store import FrameStore

    fs = FrameStore(tiny_store)
    classes = label_map("store", fs).class_indices(fs)
    frames = fs.column("frame_count")
    train, val = (frames[r.rows(fs, classes)] for r in (ROLES.train, ROLES.validation))
    of = lambda plan: (train, val)  # noqa: E731
    one = {n: _plans((0,), (n,)) for n in ("4", "16", "all")}
    s = {n: seed_packs.pack_seconds(p, of, epochs=2, batch_size=8) for n, p in one.items()}
    assert s["16"] / s["4"] == pytest.approx(17 / 5)  # N + 1 tokens a clip
    assert s["4"] == pytest.approx(2 * (len(train) + len(val) / 3) * 5 / seed_packs.TOKENS_PER_S)  # validation: a third
    assert seed_packs.pack_seconds(one["4"], of, epochs=4, batch_size=8) == pytest.approx(2 * s["4"])
    assert seed_packs.pack_seconds(_plans(range(3), ("4",)), of, epochs=2, batch_size=8) == pytest.approx(3 * s["4"])
    # all frames: a batch is cut to its longest clip, so a train clip costs about the longest of
    # its batch; each member's batch is its own, so a pack costs its members' sum (validation,
    # forward only: a third of its own)
    longest = seed_packs._expected_longest(train, 8)
    assert train.mean() < longest < train.max()
    tokens = len(train) * (longest + 1) + (val + 1).sum() / 3
    assert s["all"] == pytest.approx(2 * tokens / seed_packs.TOKENS_PER_S)
    three = seed_packs.pack_seconds(_plans(range(3), ("all",)), of, epochs=2, batch_size=8)
    assert three == pytest.approx(3 * s["all"])
    alone = seed_packs.pack_seconds(one["all"], of, epochs=2, batch_size=1)  # a clip alone is its own length
    assert alone == pytest.approx(2 * ((train + 1).sum() + (val + 1).sum() / 3) / seed_packs.TOKENS_PER_S)


def test_expected_longest_of_k_draws():
    frames = np.array([1, 3])
    assert seed_packs._expected_longest(frames, 1) == pytest.approx(2.0)
    assert seed_packs._expected_longest(frames, 2) == pytest.approx(1 * 0.25 + 3 * 0.75)
    assert seed_packs._expected_longest(np.array([5, 5, 5]), 32) == pytest.approx(5.0)


def test_auto_is_never_worse_by_its_own_estimate_than_one_size_for_all():
    # a review's case: a local search from per-group targets alone ended at packs of 5-8 (22.6)
    # where packs of 6 everywhere give 21.4
    plans = _plans(range(30), ("4", "8"))
    cost = {"4": 1.0, "8": 1.8}
    seconds = lambda g: sum(cost[p.length] for p in g)  # noqa: E731
    for slots in (2, 3, 5, 8):
        packs = seed_packs.balanced(plans, slots, seconds, overhead_s=2.3)
        got = seed_packs._schedule_length([seconds(g) + 2.3 for g in packs], slots)
        for k in range(1, seed_packs.AUTO_MAX + 1):
            uniform = sorted((seconds(g) + 2.3 for g in seed_packs.pack(plans, k)), reverse=True)
            assert got <= seed_packs._schedule_length(uniform, slots) + 1e-9, (slots, k)


def test_auto_takes_trials_that_cost_nothing_and_refuses_no_size():
    plans = _plans(range(3), ("4", "all"))
    packs = seed_packs.balanced(plans, 2, lambda g: 0.0 if g[0].length == "4" else float(len(g)))
    assert sorted(p.name for g in packs for p in g) == sorted(p.name for p in plans)
    with pytest.raises(ValueError, match="at least 1"):
        seed_packs.balanced(plans, 2, lambda g: 1.0, largest=0)


def test_a_sweep_refuses_packs_that_mix_lengths_or_miss_a_plan(tmp_path):
    from orchestrator.experiment import Experiment
    from orchestrator.runner import run_sweep
    from orchestrator.workdir import Workdir

    plans = _plans(range(2), ("4", "all"))
    wd = Workdir.resolve(tmp_path / "work")
    with pytest.raises(ValueError, match="one length, fold and config"):
        run_sweep(Experiment(name="x"), plans, "f", wd, packs=[plans[:1], [plans[1], plans[2]], plans[3:]])
    with pytest.raises(ValueError, match="every plan exactly once"):
        run_sweep(Experiment(name="x"), plans, "f", wd, packs=[plans[:2], plans[2:3]])
    assert not (tmp_path / "work" / "mlflow.db").exists()  # refused before anything is made
