"""Which trials share a pack, how packs are named, and what ``--pack-seeds auto`` picks."""

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


def test_auto_fills_every_slot_with_the_largest_packs():
    ablation = _plans(range(30), ("4", "8", "12", "16", "all"))  # the default: 5 groups of 30 seeds
    # 2 slots: 30 packs of 5 run in 15 full rounds (75 seed-rounds); packs of 10 need 8 rounds,
    # the last with one slot idle (80)
    assert seed_packs.auto_size(ablation, slots=2) == 5
    assert seed_packs.auto_size(ablation, slots=2, largest=15) == 15  # 10 packs of 15: 5 full rounds
    assert seed_packs.auto_size(ablation, slots=10) == 5  # 30 packs of 5: 3 full rounds
    assert seed_packs.auto_size(_plans((0,), ("4", "all")), slots=2) == 1  # nothing to pack
    assert seed_packs.auto_size(_plans(range(3)), slots=4) == 1  # a free slot for every seed: no packing
    assert seed_packs.auto_size(_plans(range(3)), slots=1) == 3
