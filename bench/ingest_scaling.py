"""Does ingest scale with cores? The same DFME-layout data (camera-like 128x128 JPEG frames
at 200/300/500 fps) ingested with face crops by 1 worker and by ``--workers`` workers, in one
run. Prints clips/s, frames/s and the speed-up over 1 worker.
Usage: .venv/bin/python bench/ingest_scaling.py [--train-subjects 30] [--workers 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from storage.ingest import IngestOptions, ingest
from storage.sources import dfme
from storage.sources.synthetic.layouts import CAMERA_SPEC, write_dfme_layout
from storage.store import FrameStore


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-subjects", type=int, default=30, help="subjects (9 clips each)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    spec = dataclasses.replace(CAMERA_SPEC, subjects={"train": args.train_subjects})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        layout = write_dfme_layout(tmp / "dfme", spec)
        sources, _ = dfme.clip_sources(layout.root, [dfme.read_annotations(p) for p in layout.annotation_files])
        print(f"{len(sources)} clips, {layout.frames_written} source frames; face crop, 64x64 gray")
        base = None
        fingerprints = set()
        for workers in (1, args.workers):
            t = time.perf_counter()
            rep = ingest(sources, tmp / f"s{workers}", labels=list(dfme.EMOTIONS), options=IngestOptions(size=64),
                         workers=workers)
            dt = time.perf_counter() - t
            base = base or dt
            fingerprints.add(FrameStore(tmp / f"s{workers}").fingerprint)
            print(f"  {workers} worker(s): {dt:6.2f} s  {rep.written / dt:6.1f} clips/s  "
                  f"{rep.frames_read / dt:7.1f} frames/s  speed-up {base / dt:4.2f}x")
        print(f"  same store from both: {len(fingerprints) == 1}")


if __name__ == "__main__":
    main()
