"""Feature-extraction throughput at ingest: the optical-flow ROI features (68 landmarks, a
256 x 256 face crop, Farneback flow from the onset to every frame, head motion removed,
pooled over 18 regions) for 1 and ``--workers`` workers, in one run, on the same DFME-layout
data (camera-like 128 x 128 JPEG frames at 200/300/500 fps). Ingest without features is
measured alongside as the baseline: the ratio is what the features cost.
Usage: .venv/bin/python bench/flow_features.py [--train-subjects 12] [--workers 2]
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-subjects", type=int, default=12, help="subjects (9 clips each)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    spec = dataclasses.replace(CAMERA_SPEC, subjects={"train": args.train_subjects})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        layout = write_dfme_layout(tmp / "dfme", spec)
        sources, _ = dfme.clip_sources(layout.root, [dfme.read_annotations(p) for p in layout.annotation_files])
        print(f"{len(sources)} clips, {layout.frames_written} source frames (128x128, 200/300/500 fps -> 100 fps)")
        for features in ("none", "flow_roi"):
            base = None
            for workers in (1, args.workers):
                t = time.perf_counter()
                rep = ingest(sources, tmp / f"{features}-{workers}", labels=list(dfme.EMOTIONS),
                             options=IngestOptions(size=64, features=features), workers=workers)
                dt = time.perf_counter() - t
                base = base or dt
                print(f"  features={features:<8} {workers} worker(s): {dt:6.2f} s  {rep.written / dt:6.1f} clips/s  "
                      f"{rep.frames_stored / dt:7.1f} frames/s  speed-up {base / dt:4.2f}x")


if __name__ == "__main__":
    main()
