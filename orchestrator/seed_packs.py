"""Packs of seeds (``--pack-seeds K``): trials that differ only in their seed, K to a Ray
Tune trial, trained as one model (``trainables.pack_trial``).

Trials pack together when everything but the seed is equal: the length, the fold and the
trial's own config (a nested search's choice per fold). The split and LOSO protocols draw
each seed's validation subjects from the seed; those members keep their own data in the
pack. ``auto`` picks the size from the trials and the worker slots (``auto_size``).
"""

from __future__ import annotations

import json
import math

from orchestrator.protocols import TrialPlan

AUTO = "auto"
AUTO_MAX = 10  # the largest pack ``auto`` makes (docs/PERFORMANCE.md: throughput per member levels off)


def groups(plans: list[TrialPlan]) -> list[list[TrialPlan]]:
    """The plans that may share a pack, in plan order (first appearance of each group)."""
    out: dict[str, list[TrialPlan]] = {}
    for p in plans:
        key = json.dumps([p.length, p.fold, p.trial], sort_keys=True)
        out.setdefault(key, []).append(p)
    return list(out.values())


def auto_size(plans: list[TrialPlan], slots: int, largest: int = AUTO_MAX) -> int:
    """The pack size that keeps every worker slot busy in every round with the largest packs:
    of the sizes 1..``largest``, the one with the fewest rounds x size (rounds: packs over
    ``slots`` trials at once), the larger on a tie. 1 when no two trials can share a pack."""
    gs = groups(plans)
    if not gs or max(len(g) for g in gs) < 2 or slots < 1:  # no slot yet (an autoscaler's): no packing
        return 1
    best, cost = 1, math.inf
    for k in range(1, min(largest, max(len(g) for g in gs)) + 1):
        packs = sum(math.ceil(len(g) / k) for g in gs)
        c = math.ceil(packs / slots) * k
        if c <= cost:
            best, cost = k, c
    return best


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


