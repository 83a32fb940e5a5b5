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


def _simulate(progress: SweepProgress, trials: list[tuple[str, float]], epochs: int, overhead: float, slots: int,
              clock: list[float], at: list[float]) -> list[tuple[float, float]]:
    """Runs ``trials`` (name, seconds an epoch), in order, each on the first free of ``slots``,
    through the callback's hooks at the times they happen (``clock[0]``); returns, at each
    fraction of the sweep's true length in ``at``, (the ETA shown, the true time left)."""
    import heapq

    events, free = [], [0.0] * slots
    for i, (name, per_epoch) in enumerate(trials):
        start = heapq.heappop(free)
        t = _trial(name, 1)
        events.append((start, i, 0, "start", t))
        for e in range(1, epochs + 1):
            events.append((start + overhead / 2 + e * per_epoch, i, e, "result", t))
        end = start + overhead + epochs * per_epoch
        events.append((end, i, epochs + 1, "complete", t))
        heapq.heappush(free, end)
    events.sort(key=lambda ev: ev[:3])
    length = max(ev[0] for ev in events)
    marks, seen = sorted(at), []
    for when, _, epoch, kind, t in events:
        while marks and marks[0] * length < when:
            clock[0] = marks[0] * length
            seen.append((progress.eta(), length - clock[0]))
            marks.pop(0)
        clock[0] = when
        if kind == "start":
            progress.on_trial_start(0, [], t)
        elif kind == "result":
            progress.on_trial_result(0, [], t, {"epoch": epoch})
        else:
            progress.on_trial_complete(0, [], t)
    return seen


def test_the_eta_weighs_epochs_by_their_cost():
    """The default ablation's order (costliest first: all frames, then N = 16 ... 4): an ETA
    by epochs alike would promise the first minutes' slow pace for the whole sweep; weighed
    by each epoch's cost and each trial's fixed cost it is within 15 % of the truth from a
    tenth of the way on."""
    per_epoch = {"all": 1.27, "16": 0.35, "12": 0.27, "8": 0.19, "4": 0.10}  # as pack_seconds rates the default store
    overhead, epochs = 3.5, 16
    trials = [(f"seed{s}-N{n}", c) for n, c in per_epoch.items() for s in range(30)]
    clock = [0.0]
    p = SweepProgress(len(trials), epochs, enabled=False, epoch_costs=dict(trials), trial_cost=overhead,
                      clock=lambda: clock[0])
    for eta, truth in _simulate(p, trials, epochs, overhead, 2, clock, [0.1, 0.25, 0.5, 0.75, 0.9]):
        assert abs(eta - truth) <= 0.15 * truth, (eta, truth)
    assert p.eta() < 1e-6 and p.done == len(trials) and p.epochs_done == len(trials) * epochs
    assert abs(p.trained - p.total_work) < 1e-6 and p.skipped == 0.0


def test_the_eta_leaves_out_what_was_not_trained():
    """Runs reused and epochs restored from a checkpoint are neither in the rate nor left."""
    clock = [0.0]
    p = SweepProgress(n_trials=3, epochs=4, enabled=False, epoch_costs={"a": 1.0, "b": 1.0, "c": 1.0},
                      trial_cost=0.0, clock=lambda: clock[0])
    a, b = _trial("a", 1), _trial("b", 1)  # c not started yet
    p.on_trial_start(0, [], a)
    p.on_trial_result(0, [], a, {"epoch": 4, "reused": 1})  # reused at once: no training
    p.on_trial_complete(0, [], a)
    assert p.eta() is None and p.skipped == 4.0 and p.trained == 0.0
    p.on_trial_start(0, [], b)
    clock[0] = 10.0
    p.on_trial_result(0, [], b, {"epoch": 3})  # restored past epoch 2: one epoch trained, in 10 s
    assert p.trained == 1.0 and p.skipped == 6.0
    assert p.eta() == 50.0  # 5 epochs left (b's 1, c's 4) at 10 s each


def test_without_a_terminal_the_progress_is_a_plain_line_now_and_then():
    """A log file gets the counts and the ETA as lines (the bar cannot redraw there), at most
    one every ``every`` seconds."""
    import io

    from rich.console import Console

    out, clock = io.StringIO(), [0.0]
    p = SweepProgress(n_trials=2, epochs=4, console=Console(file=out, force_terminal=False, width=60),
                      epoch_costs={"a": 1.0, "b": 3.0}, clock=lambda: clock[0], every=30.0)
    a, b = _trial("a", 1), _trial("b", 1)
    p.on_trial_start(0, [], a)
    p.on_trial_start(0, [], b)
    for e in range(1, 5):
        clock[0] = 10.0 * e
        p.on_trial_result(0, [], a, {"epoch": e})
    p.on_trial_complete(0, [], a)
    lines = out.getvalue().splitlines()
    assert lines == [
        "trials 0/2 done, 1 running, 0 failed; 0/8 epochs, 0 % of the work; 0:00:00 elapsed, ETA -:--:--",
        "trials 0/2 done, 2 running, 0 failed; 3/8 epochs, 19 % of the work; 0:00:30 elapsed, ETA 0:02:10",
    ], lines  # one line at the start, the next 30 s later: 3 of 16 units in 30 s, 13 left
