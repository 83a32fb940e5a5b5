"""How many trials run at once on each node: the dry run's resource plan.

Ray places a trial on a node that has its CPUs and GPUs free; a fractional GPU request
(``--gpus-per-trial 0.25``) packs trials onto one GPU (four of 0.25 each), never across
two. So a node with C CPUs and G GPUs runs ``min(C // cpus, packed GPUs)`` trials at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_EPS = 1e-9  # 1 / 0.1 is 10.000000000000002


@dataclass(frozen=True)
class Node:
    name: str  # its address (or "this machine")
    cpus: float
    gpus: float


def trials_at_once(node: Node, cpus_per_trial: float, gpus_per_trial: float) -> int:
    by_cpu = math.floor(node.cpus / cpus_per_trial + _EPS) if cpus_per_trial > 0 else math.inf
    if gpus_per_trial <= 0:
        by_gpu = math.inf
    elif gpus_per_trial < 1:  # a fraction: that many per whole GPU
        by_gpu = math.floor(1 / gpus_per_trial + _EPS) * math.floor(node.gpus + _EPS)
    else:
        by_gpu = math.floor(node.gpus / gpus_per_trial + _EPS)
    n = min(by_cpu, by_gpu)
    return 0 if n == math.inf else int(n)


def plan_lines(nodes: list[Node], cpus_per_trial: float, gpus_per_trial: float, n_trials: int) -> list[str]:
    """One line per node (its resources, trials at once, trials per GPU) and the total."""
    lines = []
    total = 0
    for node in nodes:
        k = trials_at_once(node, cpus_per_trial, gpus_per_trial)
        total += k
        gpu = f", {node.gpus:g} GPU" if node.gpus else ""
        if k == 0:
            how = " (too small for one trial)"
        elif 0 < gpus_per_trial < 1:
            how = f" ({math.floor(1 / gpus_per_trial + _EPS)} per GPU)"
        elif gpus_per_trial:
            how = f" ({gpus_per_trial:g} GPU each)"
        else:
            how = ""
        lines.append(f"  {node.name}: {node.cpus:g} CPU{gpu} -> {k} trial{'s' if k != 1 else ''} at once{how}")
    if total:
        rounds = math.ceil(n_trials / total)
        lines.append(f"  in all {total} trials at once: {n_trials} trials in {rounds} round{'s' if rounds != 1 else ''}")
    else:
        lines.append("  no node can take one trial: a real run stops with an error (or waits for the autoscaler "
                     "on a cluster)")
    return lines


def cluster_nodes() -> list[Node]:
    """The alive nodes of the Ray cluster this process is connected to (``ray.init``)."""
    import ray

    out = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        res = n.get("Resources", {})
        name = f"{n.get('NodeManagerAddress', '?')} node {n.get('NodeID', '?')[:8]}"
        out.append(Node(name + (" (head)" if res.get("node:__internal_head__") else ""),
                        float(res.get("CPU", 0)), float(res.get("GPU", 0))))
    return sorted(out, key=lambda n: n.name)
