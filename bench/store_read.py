"""How fast a trial gets its frames: N evenly spaced frames of every clip of a store.

Compares, in one run and on the same clips:
- the orch store: memory-mapped Arrow, zero-copy views, only the N frames copied;
- per-clip .npy files loaded whole, then sampled (what per-trial preprocessing often does);
- per-clip .npy files memory-mapped (np.load(mmap_mode="r")), then sampled.

Prints seconds per pass and each method's ratio to the orch store (>1 = slower than orch).
Usage: .venv/bin/python bench/store_read.py [--clips 400] [--size 64] [--frames 40] [--repeat 5]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from storage.sampling import uniform_indices
from storage.store import Clip, FrameStore, StoreWriter
from timing import best_of  # bench/timing.py (scripts run from bench/)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=400)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        npy = tmp / "npy"
        npy.mkdir()
        with StoreWriter(tmp / "store", labels=["x"], frame_shape=(args.size, args.size)) as w:
            for i in range(args.clips):
                n = int(rng.integers(args.frames // 2, args.frames + 1))
                frames = rng.integers(0, 256, (n, args.size, args.size), dtype=np.uint8)
                w.add(Clip(f"c{i}", "bench", "s", "train", "x", 100.0, frames))
                np.save(npy / f"c{i}.npy", frames)
        store = FrameStore(tmp / "store")
        files = [npy / f"c{i}.npy" for i in range(args.clips)]

        def orch(n):
            return [store.sample(i, n) for i in range(len(store))]

        def npy_whole(n):
            out = []
            for f in files:
                a = np.load(f)
                out.append(a if n is None else a[uniform_indices(len(a), n)])
            return out

        def npy_mmap(n):
            out = []
            for f in files:
                a = np.load(f, mmap_mode="r")
                out.append(a if n is None else np.asarray(a[uniform_indices(len(a), n)]))
            return out

        methods = {"orch store (mmap Arrow)": orch, "npy, whole clip": npy_whole, "npy, mmap": npy_mmap}
        print(f"{args.clips} clips of {args.frames // 2}-{args.frames} frames at {args.size}x{args.size}, "
              f"best of {args.repeat}")
        for n in (4, 8, 16, None):
            times = {}
            for name, fn in methods.items():
                times[name] = best_of(fn, n, args.repeat)
            base = times["orch store (mmap Arrow)"]
            label = "all" if n is None else n
            for name, t in times.items():
                print(f"  N={label:>3}  {name:<24} {t * 1000:8.2f} ms   ratio {t / base:6.2f}")



if __name__ == "__main__":
    main()
