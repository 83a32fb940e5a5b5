"""The live progress counts seeds, not Ray Tune trials: a pack of K is K trials done (or
failed, less the members it reused), and its epochs advance the bar K at a time."""

from types import SimpleNamespace

from orchestrator.progress import SweepProgress


def _trial(tid: str, seeds: int):
    plan = {"name": tid, "members": [{"seed": s} for s in range(seeds)]} if seeds > 1 else {"name": tid}
    return SimpleNamespace(trial_id=tid, config={"plan": plan})


def test_packs_count_their_seeds():
    p = SweepProgress(n_trials=7, epochs=4, enabled=False, packs=3)
    a, b, c = _trial("a", 3), _trial("b", 3), _trial("c", 1)
    for t in (a, b, c):
        p.on_trial_start(0, [], t)
    assert "3 running in 3 packs" not in p._describe() and "7 running in 3 packs" in p._describe()
    p.on_trial_result(0, [], a, {"epoch": 2})
    assert p._progress.tasks[0].completed == 6  # 2 epochs x 3 seeds
    p.on_trial_complete(0, [], a)
    assert p.done == 3 and p._progress.tasks[0].completed == 12
    p.on_trial_result(0, [], b, {"epoch": 1, "reused": 1})  # one member's FINISHED run reused
    p.on_trial_error(0, [], b)
    assert p.failed == 2 and p.reused == 1  # the reused member did not fail
    p.on_trial_complete(0, [], c)
    assert p.done == 4 and "trials 4/7 done, 0 running in 0 packs, 2 failed, 1 reused" == p._describe()
