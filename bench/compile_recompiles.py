"""How often a compiled packed forward recompiles on the shapes real trials give it.

Runs ``PackedFitter`` for real (training, ragged members, the masked Adam path, validation
in ``no_grad`` at ``EVAL_BATCH``) on synthetic data of the paper's model's sizes, one pack
per frame length N (N + 1 tokens: 5, 9, 13, 17; "all": every clip its own length, so each
batch is cut to its longest clip), with ``PackedModel.forward`` replaced by
``torch.compile`` of it. Prints the shapes the forward met, dynamo's compiled frames (1 +
recompiles) and graph count, and the wall time of the whole run. ``--backend eager`` counts
recompiles without inductor (the guards, so the count, are the same; fast); ``inductor`` also
gives the compile time the run pays. ``--dynamic``: ``false`` (static, a graph per shape up
to dynamo's cache limit, then eager), ``auto`` (torch.compile's default: static first,
dynamic after a recompile), ``true``, ``marked`` (static, with the member, batch and frame
dimensions marked dynamic on every call; the member count cannot be: the attention loops
over members, so dynamo specialises it). Dynamo's cache is per code object, so the packs
of one process (a reused Ray worker's) share its recompile limit (8): past it, the forward
runs eager, with a warning.

Usage: .venv/bin/python bench/compile_recompiles.py [--backend eager|inductor]
       [--dynamic false|auto|true|marked] [--lengths 4,8,12,16,all] [--members 5] [--epochs 2]
       (TORCH_LOGS=recompiles prints each recompile's reason)
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from trainables.config import TrainConfig
from trainables.data import SplitData
from trainables.model import EvolutionTransformer, ModelConfig
from trainables.packed_fit import PackedFitter

TOKEN_DIM, CLASSES, LONGEST = 36, 7, 31  # flow_roi tokens, DFME's classes, the longest clip (frames)


def split(role: str, n: int, length: int | None, seed: int) -> SplitData:
    """``n`` clips of ``length`` frames (None: 8..LONGEST frames each, as "all" reads them)."""
    g = np.random.default_rng(seed)
    lengths = g.integers(8, LONGEST + 1, n) if length is None else np.full(n, length)
    width = LONGEST if length is None else length
    tokens = np.zeros((n, width, TOKEN_DIM), np.float32)
    mask = np.zeros((n, width), bool)
    for i, t in enumerate(lengths):
        tokens[i, :t] = g.normal(size=(t, TOKEN_DIM))
        mask[i, :t] = True
    labels = g.integers(0, CLASSES, n).astype(np.int64)
    return SplitData(role, [f"c{i}" for i in range(n)], torch.from_numpy(tokens), torch.from_numpy(mask),
                     torch.from_numpy(labels))


def compiled(forward, backend: str, dynamic: str, shapes: set):
    fn = torch.compile(forward, backend=backend,  # not fullgraph: past the recompile limit, eager (warned)
                       dynamic={"false": False, "auto": None, "true": True, "marked": False}[dynamic])

    def call(params, tokens, mask):
        shapes.add((tuple(tokens.shape[:3]), torch.is_grad_enabled()))
        if dynamic == "marked":
            for dim in (1, 2):  # not the members: the attention loops over them, so they are static
                torch._dynamo.mark_dynamic(tokens, dim)
                torch._dynamo.mark_dynamic(mask, dim)
        return fn(params, tokens, mask)
    return call


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="eager")
    ap.add_argument("--dynamic", choices=["false", "auto", "true", "marked"], default="false")
    ap.add_argument("--lengths", default="4,8,12,16,all")
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from torch._dynamo.utils import counters
    cfg = TrainConfig(epochs=args.epochs, batch_size=32, lr=1e-3, grad_clip=1.0)
    k = args.members
    start, shapes = time.perf_counter(), set()
    for length in args.lengths.split(","):
        n = None if length == "all" else int(length)
        trains = [split("train", 70 + 3 * i, n, i) for i in range(k)]  # ragged: 70..82 clips, a short last batch
        val = split("validation", 300, n, 99)  # two evaluation batches: 256 and 44
        members = []
        for seed in range(k):
            torch.manual_seed(seed)
            members.append(EvolutionTransformer(ModelConfig(max_frames=LONGEST), TOKEN_DIM, CLASSES))
        fitter = PackedFitter(members, cfg, list(range(k)), CLASSES, trains, [val] * k)
        fitter.model.forward = compiled(fitter.model.forward, args.backend, args.dynamic, shapes)
        for _ in fitter.epochs():
            pass
        print(f"N={length}: {time.perf_counter() - start:.0f} s so far, {len(shapes)} shapes so far, graphs "
              f"{counters['stats'].get('unique_graphs', 0)}", flush=True)
    print(f"backend {args.backend}, dynamic {args.dynamic}, {k} members, {args.epochs} epochs per length; "
          f"{len(shapes)} distinct forward shapes ([members, batch, frames], grad): {sorted(shapes)}")
    print(f"dynamo: {dict(counters['frames'])}, {dict(counters['stats'])}; wall {time.perf_counter() - start:.0f} s; "
          f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
