"""The synthetic benchmark written in real datasets' layouts, so that every loader is tested
on frames that exist, under the exact paths the official distributions use: CAS(ME)^3
Part A JPEG folders, DFME / CCAC2024 frame folders with their annotation sheets, and mp4
videos with a manifest.

Frames look like a camera's: the face in the middle of a wider view (``CAMERA_SPEC``), so
that ingest's face detector has a face to find.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from storage.sources.casme3 import AnnotationRow
from storage.sources.dfme import EMOTIONS as DFME_EMOTIONS
from storage.sources.synthetic.benchmark import CASME3_TO_SYNTHETIC, SyntheticSpec, _Subject, generate, render_clip

# camera-like frames: 128 x 128, the face box spanning three quarters of the width
CAMERA_SPEC = SyntheticSpec(size=128, face_view=0.75)



def _write_jpegs(folder: Path, frames: np.ndarray, first_number: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n, frame in enumerate(frames, first_number):
        cv2.imwrite(str(folder / f"{n}.jpg"), cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))


def write_casme3_layout(root: str | Path, rows: Iterable[AnnotationRow], spec: SyntheticSpec = CAMERA_SPEC) -> int:
    """Render each row's clip (onset..offset at 30 fps) as JPEGs at
    ``root/part_A/{Subject}/{Filename}/color/{n}.jpg``. Returns the number of frames written.
    Rows must be usable (``problem is None``)."""
    root = Path(root)
    subjects: dict[str, _Subject] = {}
    written = 0
    for row in rows:
        if row.problem:
            raise ValueError(f"row {row.sheet_row}: cannot render a defective row ({row.problem})")
        if row.subject not in subjects:
            subjects[row.subject] = _Subject(spec, np.random.default_rng([spec.seed, len(subjects), 11]))
        rng = np.random.default_rng([spec.seed, row.index, 12])
        frames, _, _ = render_clip(subjects[row.subject], CASME3_TO_SYNTHETIC[row.emotion], spec, rng,
                                30.0, n_frames=row.frame_count)
        _write_jpegs(root / "part_A" / row.subject / row.filename / "color", frames, row.onset)
        written += len(frames)
    return written


@dataclass
class WrittenLayout:
    """What a layout writer wrote, for tests to check ingest against."""

    root: Path
    annotation_files: list[Path]
    clips: dict[str, dict] = field(default_factory=dict)  # clip id -> split, subject, label, fps, frames
    frames_written: int = 0


# DFME sample names: like the competition's, one folder per sample
def _dfme_name(clip_id: str) -> str:
    return f"dfme_{clip_id}"


def write_dfme_layout(root: str | Path, spec: SyntheticSpec, sheet_suffix: str = ".csv",
                      fps_column: bool = True) -> WrittenLayout:
    """The benchmark's clips as DFME / CCAC2024 data: ``root/{Filename}/{n}.jpg`` (frames
    numbered from 1) and one annotation sheet per split (``train``, ``test_A``, ``test_B``
    + ``sheet_suffix``) with Filename, Subject, EmotionId (train only: test rows are
    unlabelled), Onset, Apex, Offset and, if ``fps_column``, fps."""
    root = Path(root)
    out = WrittenLayout(root, [])
    rows: dict[str, list[list]] = {}
    for clip in generate(spec):
        name = _dfme_name(clip.clip_id)
        _write_jpegs(root / name, clip.frames, 1)
        out.frames_written += len(clip.frames)
        labelled = clip.split == "train"
        out.clips[name] = dict(split=clip.split, subject=clip.subject, label=clip.label if labelled else None,
                               fps=clip.source_fps, frames=len(clip.frames), apex=clip.apex)
        row = [name, clip.subject, DFME_EMOTIONS.index(clip.label) if labelled else "",
               1, clip.apex + 1, len(clip.frames)]
        rows.setdefault(clip.split, []).append(row + ([int(clip.source_fps)] if fps_column else []))
    header = ["Filename", "Subject", "EmotionId", "Onset", "Apex", "Offset"] + (["fps"] if fps_column else [])
    for split, split_rows in rows.items():
        path = root / f"{split}{sheet_suffix}"
        _write_sheet(path, header, split_rows)
        out.annotation_files.append(path)
    return out


def _write_sheet(path: Path, header: list[str], rows: list[list]) -> None:
    if path.suffix == ".csv":
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([header, *rows])
    else:
        import openpyxl

        wb = openpyxl.Workbook()
        ws = wb.active
        for r in [header, *rows]:
            ws.append(r)
        wb.save(path)


def write_video_manifest(root: str | Path, spec: SyntheticSpec, frame_folders: int = 0) -> WrittenLayout:
    """The benchmark's clips as mp4 videos at their own frame rates,
    ``root/videos/{subject}/{clip}.mp4``, listed in ``root/manifest.csv`` (path, subject,
    label, fps, onset, apex, offset, split; paths relative to ``root``). The first
    ``frame_folders`` clips are written as folders of numbered JPEGs instead."""
    from storage.sources.synthetic.videos import write_mp4

    root = Path(root)
    out = WrittenLayout(root, [root / "manifest.csv"])
    rows = []
    for k, clip in enumerate(generate(spec)):
        if k < frame_folders:
            rel = f"frames/{clip.subject}/{clip.clip_id}"
            _write_jpegs(root / rel, clip.frames, 0)
        else:
            rel = f"videos/{clip.subject}/{clip.clip_id}.mp4"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            write_mp4(clip.frames, root / rel, clip.source_fps)
        out.frames_written += len(clip.frames)
        out.clips[rel] = dict(split=clip.split, subject=clip.subject, label=clip.label, fps=clip.source_fps,
                              frames=len(clip.frames), apex=clip.apex)
        rows.append([rel, clip.subject, clip.label, int(clip.source_fps), 0, clip.apex, len(clip.frames) - 1,
                     clip.split])
    _write_sheet(root / "manifest.csv", ["path", "subject", "label", "fps", "onset", "apex", "offset", "split"], rows)
    return out


def small(spec: SyntheticSpec = CAMERA_SPEC, **subjects: int) -> SyntheticSpec:
    """A few short camera-like clips for tests: ``small(train=2, test_A=1, test_B=1)``."""
    return replace(spec, subjects=subjects or {"train": 2, "test_A": 1, "test_B": 1}, clips_per_subject=3,
                   duration_s=(0.08, 0.12))
