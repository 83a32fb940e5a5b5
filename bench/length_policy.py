"""All frames vs N evenly spaced frames, learned vs normalised-time positions, on clips whose
lengths follow the real CAS(ME)^3 Part A sheet (30 fps; median 22 frames, long tail).

A synthetic store (the benchmark's expressions, camera-like frames through ingest's pipeline,
flow ROI tokens) with ``fps_choices=(30,)`` and each clip's duration drawn from the sheet's
usable onset..offset lengths; then direct ``Fitter`` runs, one thread: train on ``train``,
the epoch chosen on ``test_A``, test UF1 on ``test_B``.

    .venv/bin/python bench/length_policy.py [--seeds 3] [--first-seed 0] [--epochs 24] [--store DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

SHEET = "/work/shared/datasets/casme3-partA-annotations/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"


def sheet_lengths(path: str = SHEET) -> np.ndarray:
    from storage.sources.casme3 import read_annotations

    return np.array([r.frame_count for r in read_annotations(path).usable])


def spec(lengths: np.ndarray):
    from storage.sources.synthetic import SyntheticSpec

    return SyntheticSpec(seed=11, size=16, subjects={"train": 10, "test_A": 4, "test_B": 4}, clips_per_subject=9,
                         fps_choices=(30,), durations_from=tuple(float(n) / 30 for n in lengths), camera=128)


def run(store, length, positions: str, seed: int, epochs: int) -> dict:
    from storage.selection import Selection, label_map
    from trainables.config import TrainConfig
    from trainables.data import fit_to_store, frame_limit, load_split
    from trainables.fit import Fitter, evaluate
    from trainables.model import ModelConfig, create_model

    classes = label_map("store", store).class_indices(store)
    model_cfg = fit_to_store(ModelConfig(positions=positions), store, [length])

    def data(split, role):
        rows = Selection((split,)).rows(store, classes)
        return load_split(store, rows, role, classes, length, "flow_roi", 16, frame_limit(model_cfg))

    train, val, test = data("train", "train"), data("test_A", "validation"), data("test_B", "test")
    n = len(store.labels)
    torch.manual_seed(seed)
    model = create_model(model_cfg, train.token_dim, n)
    t0 = time.time()
    fitter = Fitter(model, TrainConfig(epochs=epochs), seed, n, train, val)
    for _ in fitter.epochs():
        pass
    ev = evaluate(fitter.selected_model(), test, n)
    return {"length": "all" if length is None else length, "positions": positions, "seed": seed,
            "test_uf1": ev.scores.uf1, "best_val_uf1": fitter.state.best_val_uf1,
            "best_epoch": fitter.state.best_epoch, "seconds": round(time.time() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--store", default="/tmp/orch-length-bench/store")
    ap.add_argument("--out", default="/tmp/orch-length-bench/results.jsonl")
    ap.add_argument("--positions", default="learned,normalized_time")
    ap.add_argument("--lengths", default="all,16")
    a = ap.parse_args()
    torch.set_num_threads(1)
    from storage.sampling import parse_length
    from storage.sources.synthetic import write_store
    from storage.store import FrameStore

    lengths = sheet_lengths()
    print(f"sheet: {len(lengths)} usable clips, frames median {np.median(lengths):.0f}, "
          f"p90 {np.percentile(lengths, 90):.0f}, max {lengths.max()}")
    if not Path(a.store).exists():
        t0 = time.time()
        write_store(spec(lengths), a.store, workers=1)
        print(f"store built in {time.time() - t0:.0f} s")
    store = FrameStore(a.store)
    fc = store.column("frame_count")
    print(f"store: {len(store)} clips, frames median {np.median(fc):.0f}, p90 {np.percentile(fc, 90):.0f}, "
          f"max {fc.max()}")
    with open(a.out, "a") as out:
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            for positions in a.positions.split(","):
                for n in a.lengths.split(","):
                    r = run(store, parse_length(n), positions, seed, a.epochs)
                    print(json.dumps(r), flush=True)
                    out.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
