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
# ``auto``'s estimates (docs/PERFORMANCE.md). One CPU thread trains the paper's model at about
# 7,800 tokens a second (benchmark 1: 32 clips x 32 tokens in 131 ms). A Tune trial costs about
# 3.5 such seconds besides its training: benchmark 5's solo default ablation took 7.3 s per
# trial at N = 4 and 33.4 s at N = all (medians), estimated 1.7 and 20.4 s, which is 1.4 x the
# estimate + 4.9 s
TOKENS_PER_S = 7_800.0
TRIAL_OVERHEAD_S = 3.5


def groups(plans: list[TrialPlan]) -> list[list[TrialPlan]]:
    """The plans that may share a pack, in plan order (first appearance of each group)."""
    out: dict[str, list[TrialPlan]] = {}
    for p in plans:
        key = json.dumps([p.length, p.fold, p.trial], sort_keys=True)
        out.setdefault(key, []).append(p)
    return list(out.values())


def balanced(plans: list[TrialPlan], slots: int, seconds: Callable[[list[TrialPlan]], float],
             packable: Callable[[TrialPlan], bool] = lambda plan: True, largest: int = AUTO_MAX,
             overhead_s: float = TRIAL_OVERHEAD_S) -> list[list[TrialPlan]]:
    """``--pack-seeds auto``: each group's seeds in near-equal packs of at most ``largest``,
    sized so that the ``slots`` workers finish the sweep soonest, costliest pack first.

    A pack is estimated to take ``seconds(members)`` (``pack_seconds``: the pack's training)
    plus ``overhead_s``, what every Tune trial costs beyond its training. Tune starts the
    packs in the order returned, each on the first slot free, and the sweep's length is
    estimated by that schedule. The pack counts per group start from the best of one
    target pack cost for every group (a group of cheap trials, a short N, gets larger packs
    than a group of costly ones) and of one pack size for every group; then one group's
    count moves by one while that shortens the estimate. The shortest estimate wins, the
    fewer packs on a tie. Groups not ``packable`` (dropout), and everything when there is
    no slot yet (an autoscaler's), run solo."""
    if largest < 1:
        raise ValueError(f"largest pack: at least 1, got {largest}")
    gs = groups(plans)
    free = [g for g in gs if packable(g[0])] if slots >= 1 else []
    if not free or max(len(g) for g in free) < 2:
        return pack(plans, 1)
    solo = [[p] for g in gs if not packable(g[0]) for p in g]
    parts: dict[tuple[int, int], list[float]] = {}  # (group, packs) -> each pack's estimated time

    def times(i: int, n: int) -> list[float]:
        if (i, n) not in parts:
            parts[i, n] = [float(seconds(part)) + overhead_s for part in _split(free[i], n)]
        return parts[i, n]

    solo_s = [float(seconds(g)) + overhead_s for g in solo]

    def estimate(counts: tuple[int, ...]) -> tuple[float, int]:
        """The estimated sweep length (to 1 ppm: ties are ties) and the number of packs."""
        every = solo_s + [t for i, n in enumerate(counts) for t in times(i, n)]
        length = _schedule_length(sorted(every, reverse=True), slots)
        return float(f"{length:.6g}"), len(every)

    fewest = [math.ceil(len(g) / largest) for g in free]
    totals = [sum(times(i, len(g))) - len(g) * overhead_s for i, g in enumerate(free)]  # each seed alone
    starts = {tuple(max(lo, math.ceil(len(g) / k)) for g, lo in zip(free, fewest)) for k in range(1, largest + 1)}
    for target in {t / n for g, t in zip(free, totals) for n in range(1, len(g) + 1) if t > 0}:
        starts.add(tuple(min(len(g), max(lo, math.ceil(t / target - 1e-9))) for g, t, lo in zip(free, totals, fewest)))
    tried = {c: estimate(c) for c in sorted(starts)}
    counts = min(tried, key=lambda c: (tried[c], c))
    improved = True
    while improved:
        improved = False
        for i, g in enumerate(free):
            for step in (1, -1):
                c = counts[:i] + (counts[i] + step,) + counts[i + 1:]
                if fewest[i] <= c[i] <= len(g):
                    if c not in tried:
                        tried[c] = estimate(c)
                    if tried[c] < tried[counts]:
                        counts, improved = c, True
    chosen = [(t, part) for i, n in enumerate(counts) for t, part in zip(times(i, n), _split(free[i], n))]
    chosen += list(zip(solo_s, solo))
    order = sorted(range(len(chosen)), key=lambda j: (-chosen[j][0], j))  # costliest first, then plan order
    return [chosen[j][1] for j in order]


def pack_seconds(members: list[TrialPlan], frames: Callable[[TrialPlan], tuple[np.ndarray, np.ndarray]],
                 epochs: int, batch_size: int) -> float:
    """A rough time for training a pack of ``members`` (one: a solo trial) on one CPU thread,
    for ``balanced``: the tokens it trains on over ``TOKENS_PER_S``. ``frames(plan)``: the
    frame counts of the plan's train and validation clips.

    A clip is its frames at the plan's length + 1 tokens. At all frames a batch is cut to
    its longest clip (on CPU each member's batch to its own: ``packed_fit``), so a train clip
    counts as the expected longest of ``batch_size`` clips drawn from the train clips, and a
    pack costs what its members cost alone (on a GPU a pack is padded to all its members'
    longest clip, which this does not price: there, give K). Validation clips count a third (forward only).
    Only the ratios between packs and to ``TRIAL_OVERHEAD_S`` matter."""
    n = parse_length(members[0].length)
    tokens = 0.0
    for plan in members:
        train, val = frames(plan)
        if n is not None:
            tokens += (len(train) + len(val) / 3) * (n + 1)
        else:
            tokens += len(train) * (_expected_longest(train, batch_size) + 1) + (val + 1).sum() / 3
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


