"""Where a trial should get its frames from: N evenly spaced frames of every clip, read from
the orch store, from JPEG frame folders (the DFME layout) and from mp4 videos with decord.

The same synthetic clips are written three ways in one run (camera-like 128x128 frames at
200/300/500 fps): the store holds them at 100 fps, as ingest writes them; the JPEG folders
and mp4 files hold every source frame. For JPEG and mp4 only the N frames are decoded (the
best case for raw data: no face crop, no resize, which the store has already done).

Prints milliseconds per pass over all clips (best of --repeat) and each method's ratio to
the store (>1 = slower than the store).
Usage: .venv/bin/python bench/ingest_read.py [--train-subjects 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from storage.preprocess.temporal import resample_indices
from storage.sampling import uniform_indices
from storage.sources.frames import numbered_frames
from storage.sources.synthetic import write_store
from storage.sources.synthetic.layouts import CAMERA_SPEC, write_dfme_layout, write_video_manifest
from storage.sources.video import read_video
from storage.store import FrameStore
from timing import best_of  # bench/timing.py (scripts run from bench/)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-subjects", type=int, default=4, help="subjects (9 clips each)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    spec = dataclasses.replace(CAMERA_SPEC, subjects={"train": args.train_subjects})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        write_store(spec, tmp / "store")
        jpeg = write_dfme_layout(tmp / "jpeg", spec)
        mp4 = write_video_manifest(tmp / "mp4", spec)
        print(f"{len(jpeg.clips)} clips, {jpeg.frames_written} source frames at 128x128 (200/300/500 fps); "
              f"written three ways in {time.perf_counter() - t0:.0f} s")
        store = FrameStore(tmp / "store")
        folders = [numbered_frames(jpeg.root / name)[0] for name in sorted(jpeg.clips)]
        videos = [(mp4.root / rel, info["frames"], info["fps"]) for rel, info in sorted(mp4.clips.items())]

        def from_store(n):
            return [np.array(store.sample(i, n)) for i in range(len(store))]

        def from_jpeg(n):
            out = []
            for paths in folders:
                kept = resample_indices(len(paths), _fps(paths, jpeg), 100.0)  # the same 100 fps frames
                pick = kept if n is None else kept[uniform_indices(len(kept), n)]
                out.append(np.stack([cv2.imread(str(paths[k]), cv2.IMREAD_GRAYSCALE) for k in pick]))
            return out

        def from_mp4(n):
            out = []
            for path, frames, fps in videos:
                kept = resample_indices(frames, fps, 100.0)
                pick = kept if n is None else kept[uniform_indices(len(kept), n)]
                out.append(read_video(path, pick))
            return out

        methods = {"orch store (mmap Arrow)": from_store, "JPEG folders (OpenCV)": from_jpeg,
                   "mp4 (decord)": from_mp4}
        print(f"best of {args.repeat}; ratio = time / store's time")
        for n in (4, 8, 16, None):
            times = {}
            for name, fn in methods.items():
                times[name] = best_of(fn, n, args.repeat)
            base = times["orch store (mmap Arrow)"]
            for name, t in times.items():
                print(f"  N={'all' if n is None else n:>3}  {name:<24} {t * 1000:9.2f} ms   ratio {t / base:8.1f}")


def _fps(paths: list[Path], layout) -> float:
    return layout.clips[paths[0].parent.name]["fps"]



if __name__ == "__main__":
    main()
