"""Packs of seeds (``--pack-seeds K``): trials that differ only in their seed, K to a Ray
Tune trial, trained as one model (``trainables.pack_trial``).

Trials pack together when everything but the seed is equal: the length, the fold and the
trial's own config (a nested search's choice per fold). The split and LOSO protocols draw
each seed's validation subjects from the seed; those members keep their own data in the
pack. ``auto`` sizes the packs from the trials' costs and the worker slots (``balanced``).
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Callable

import numpy as np

from orchestrator.protocols import TrialPlan
from storage.sampling import parse_length

AUTO = "auto"
AUTO_MAX = 10  # the largest pack ``auto`` makes (docs/PERFORMANCE.md: throughput per member levels off)
# ``auto``'s estimates (docs/PERFORMANCE.md): one CPU thread trains the paper's model at about
# 7,800 tokens a second (benchmark 1: 32 clips x 32 tokens in 131 ms), and a Tune trial costs
# about 2.3 s besides its training (benchmark 5: the default ablation's 150 solo trials against
# its 30 packs, 912 s against 774 s on 2 slots)
TOKENS_PER_S = 7_800.0
TRIAL_OVERHEAD_S = 2.3


def groups(plans: list[TrialPlan]) -> list[list[TrialPlan]]:
    """The plans that may share a pack, in plan order (first appearance of each group)."""
    out: dict[str, list[TrialPlan]] = {}
    for p in plans:
        key = json.dumps([p.length, p.fold, p.trial], sort_keys=True)
        out.setdefault(key, []).append(p)
    return list(out.values())


def balanced(plans: list[TrialPlan], slots: int, seconds: Callable[[TrialPlan], float],
             packable: Callable[[TrialPlan], bool] = lambda plan: True, largest: int = AUTO_MAX,
             overhead_s: float = TRIAL_OVERHEAD_S) -> list[list[TrialPlan]]:
    """``--pack-seeds auto``: each group's seeds in near-equal packs of at most ``largest``,
    sized so that the ``slots`` workers finish the sweep soonest, costliest pack first.

    A pack is estimated to take its members' ``seconds`` (``trial_seconds``) plus
    ``overhead_s``, what every Tune trial costs beyond its training. Tune starts the packs
    in the order returned, each on the first slot free, and the sweep's length is estimated
    by that schedule. Packs are sized by one target for every group, so a group of cheap
    trials (a short N) gets larger packs than a group of costly ones; of the targets tried,
    the shortest estimate wins, the fewer packs on a tie. Groups not ``packable``
    (dropout), and everything when there is no slot yet (an autoscaler's), run solo."""
    gs = groups(plans)
    cost = {id(p): float(seconds(p)) for p in plans}
    free = [g for g in gs if packable(g[0])] if slots >= 1 else []
    solo = [[p] for g in gs if not packable(g[0]) or slots < 1 for p in g]
    if not free or max(len(g) for g in free) < 2:
        return pack(plans, 1)

    solo_s = [cost[id(g[0])] + overhead_s for g in solo]
    parts: dict[tuple[int, int], list[float]] = {}

    def length(counts: tuple[int, ...]) -> tuple[float, int]:
        """The estimated sweep length and the number of packs, for ``counts`` packs per group."""
        times = list(solo_s)
        for i, n in enumerate(counts):
            if (i, n) not in parts:
                parts[i, n] = [sum(cost[id(p)] for p in part) + overhead_s for part in _split(free[i], n)]
            times += parts[i, n]
        return _schedule_length(sorted(times, reverse=True), slots), len(times)

    # start from the best of one target cost per pack for every group, then move one group's
    # pack count by one while that shortens the estimate (or keeps it with fewer packs)
    fewest = [math.ceil(len(g) / largest) for g in free]
    totals = [sum(cost[id(p)] for p in g) for g in free]
    tried: dict[tuple[int, ...], tuple[float, int]] = {}
    for target in sorted({t / n for g, t in zip(free, totals) for n in range(1, len(g) + 1)}, reverse=True):
        counts = tuple(min(len(g), max(lo, math.ceil(t / target - 1e-9))) for g, t, lo in zip(free, totals, fewest))
        if counts not in tried:
            tried[counts] = length(counts)
    counts = min(tried, key=tried.__getitem__)
    improved = True
    while improved:
        improved = False
        for i, g in enumerate(free):
            for step in (1, -1):
                c = counts[:i] + (counts[i] + step,) + counts[i + 1:]
                if fewest[i] <= c[i] <= len(g):
                    if c not in tried:
                        tried[c] = length(c)
                    if tried[c] < tried[counts]:
                        counts, improved = c, True
    packs = solo + [part for g, n in zip(free, counts) for part in _split(g, n)]
    return sorted(packs, key=lambda g: -(sum(cost[id(p)] for p in g) + overhead_s))  # stable among equals


def trial_seconds(plan: TrialPlan, store, classes: np.ndarray, epochs: int, batch_size: int) -> float:
    """A rough time for one trial of ``plan`` on one CPU thread, for ``balanced``: the
    tokens it trains on over ``TOKENS_PER_S``. A clip is its frames at the plan's length
    + 1 tokens; at all frames a batch is cut to its longest clip, so a train clip counts as
    the expected longest of ``batch_size`` clips drawn from the train clips. Validation
    clips count a third (forward only). Only the ratios between trials and to
    ``TRIAL_OVERHEAD_S`` matter."""
    frames = store.column("frame_count")
    n = parse_length(plan.length)
    train = frames[plan.roles.train.rows(store, classes)]
    val = frames[plan.roles.validation.rows(store, classes)]
    if n is not None:
        tokens = (len(train) + len(val) / 3) * (n + 1)
    else:
        tokens = len(train) * (_expected_longest(train, batch_size) + 1) + (val + 1).sum() / 3
    return epochs * float(tokens) / TOKENS_PER_S


def _expected_longest(frames: np.ndarray, k: int) -> float:
    """The expected largest of ``k`` draws (with replacement) from ``frames``."""
    if len(frames) == 0:
        return 0.0
    values, counts = np.unique(frames, return_counts=True)
    below = np.cumsum(counts) / len(frames)  # P(draw <= value)
    at_most = below ** k  # P(largest of k <= value)
    return float((values * np.diff(at_most, prepend=0.0)).sum())


def _split(group: list[TrialPlan], n: int) -> list[list[TrialPlan]]:
    """``group`` in ``n`` consecutive runs whose sizes differ by at most one."""
    q, r = divmod(len(group), n)
    cuts = [i * q + min(i, r) for i in range(n + 1)]
    return [group[cuts[i]: cuts[i + 1]] for i in range(n)]


def _schedule_length(costs: list[float], slots: int) -> float:
    """When the last of ``costs`` ends if each starts, in order, on the first slot free."""
    free = [0.0] * slots
    for c in costs:
        heapq.heapreplace(free, free[0] + c)
    return max(free)


def pack(plans: list[TrialPlan], size: int, packable=lambda plan: True) -> list[list[TrialPlan]]:
    """Each group's plans in runs of ``size`` (the last run of a group may be shorter); a
    group whose plans are not ``packable`` (a per-fold config with dropout) runs solo."""
    if size < 1:
        raise ValueError(f"pack size: at least 1, got {size}")
    return [g[i: i + (size if packable(g[0]) else 1)] for g in groups(plans)
            for i in range(0, len(g), size if packable(g[0]) else 1)]


def pack_name(members: list[TrialPlan]) -> str:
    """The first member's name with its seed replaced by the pack's seeds: ``seed0-9-N4``
    for seeds 0..9 of N4, ``seed0,2,5-N4`` when not consecutive, ``fold-s01-seed0-4-N4``.
    The name of a pack of one is its plan's."""
    first = members[0]
    if len(members) == 1:
        return first.name
    seeds = [m.seed for m in members]
    consecutive = seeds == list(range(seeds[0], seeds[0] + len(seeds)))
    text = f"seed{seeds[0]}-{seeds[-1]}" if consecutive else "seed" + ",".join(map(str, seeds))
    own = f"seed{first.seed}"
    return first.name.replace(own, text, 1) if own in first.name else f"{text}-{first.name}"


def pack_dict(members: list[TrialPlan]) -> dict:
    """A pack as its Tune trial's ``plan``: its name, length and fold (what every member
    shares) and its members' plans."""
    return {"name": pack_name(members), "length": members[0].length, "fold": members[0].fold,
            "members": [m.to_dict() for m in members]}


