"""DFME / CCAC2024, in the competition's layout: each sample's frames as numbered image
files in ``{root}/{Filename}/``, and annotation sheets (xlsx or csv) with at least
``Filename`` and ``Subject``, and for training data ``EmotionId`` (0-6 in DFME's order).

- Column names are matched loosely (case, spaces, underscores); the columns used are kept
  (``AnnotationSheet.columns_used``) so a report can say which they were.
- Frame rate (200/300/500 fps) per row from an fps column when the sheet has one, else the
  ``fps`` given by the caller; normalised to 100 fps at ingest.
- Onset/apex/offset when given, as the frame numbers in the file names.
- Split (train / test_A / test_B) from a split column, else from the sheet's file name.
- Test rows have no labels: they are ingested with the label unknown, as a submission
  predicts them. A training row without a label is a defect.

Every row is read and kept; a row that cannot be used carries its ``problem``, and becomes
a ``Skip`` naming the sheet, row and reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from storage.ingest import Skip
from storage.sources.frames import ClipError, ClipSource, inside, numbered_frames
from storage.sources.sheets import normalise, read_sheet

DATASET = "dfme"
# DFME's seven classes, in DFME's order (EmotionId 0..6)
EMOTIONS = ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")
SPLITS = ("train", "test_A", "test_B")

COLUMNS = {
    "filename": ("Filename", "File name", "Sample", "Sample name", "Video", "Clip", "Name"),
    "subject": ("Subject", "Subject ID", "Sub", "Participant"),
    "emotion": ("EmotionId", "Emotion ID", "Emotion", "Label", "Label ID", "Class"),
    "onset": ("Onset", "Onset frame", "OnsetFrame"),
    "apex": ("Apex", "Apex frame", "ApexFrame"),
    "offset": ("Offset", "Offset frame", "OffsetFrame"),
    "fps": ("fps", "Frame rate", "FrameRate", "Frames per second"),
    "split": ("Split", "Set", "Subset", "Partition"),
}
OPTIONAL = ("emotion", "onset", "apex", "offset", "fps", "split")


def split_of_name(name: str) -> str | None:
    """The split a file or folder name says it holds: ``train_data.xlsx`` -> train,
    ``testA.csv`` / ``test_A`` / ``test-a`` -> test_A, ... None if it does not say."""
    n = name.casefold()
    for split, pattern in (("test_A", r"(?<![a-z])test[\s_\-]*a(?![a-z])"), ("test_B", r"(?<![a-z])test[\s_\-]*b(?![a-z])"),
                           ("train", r"train")):
        if re.search(pattern, n):
            return split
    return None


def parse_split(value: str) -> str | None:
    return {normalise(s): s for s in SPLITS}.get(normalise(value))


def parse_emotion(value: str) -> str | None:
    """An EmotionId 0-6, or an emotion's name; None if it is neither."""
    v = value.strip()
    if re.fullmatch(r"\d+(\.0+)?", v):
        i = int(float(v))
        return EMOTIONS[i] if i < len(EMOTIONS) else None
    return v.casefold() if v.casefold() in EMOTIONS else None


@dataclass(frozen=True)
class Row:
    sheet: Path
    index: int  # 0-based, after the header
    filename: str
    subject: str
    split: str | None
    label: str | None  # None: unlabelled (test rows)
    fps: float | None
    onset: int | None  # frame numbers as in the file names
    apex: int | None
    offset: int | None
    problem: str | None = None

    @property
    def sheet_row(self) -> int:
        return self.index + 2

    @property
    def item(self) -> str:
        return f"{self.sheet.name} row {self.sheet_row} ({self.filename or '?'})"


@dataclass
class AnnotationSheet:
    path: Path
    columns_used: dict[str, str]  # field -> the sheet's column header
    rows: list[Row]


def _number(value: str, what: str, kind=int):
    try:
        x = kind(float(value))
    except ValueError:
        return None, f"{what} {value!r} is not a number"
    if x < 0 or float(value) != x:
        return None, f"{what} {value!r} is not a {'frame number' if kind is int else 'frame rate'}"
    return x, None


def read_annotations(path: str | Path, fps: float | None = None) -> AnnotationSheet:
    """Every row of one annotation sheet, each with its problem if it has one. ``fps`` is the
    frame rate of rows the sheet gives none for."""
    sheet = read_sheet(path)
    cols = sheet.columns(COLUMNS, optional=OPTIONAL)
    used = {f: sheet.header[i] for f, i in cols.items()}
    file_split = split_of_name(sheet.path.name)
    if "split" not in cols and file_split is None:
        raise ValueError(f"{sheet.path}: no split column, and the file name does not say which split it "
                         f"holds ({', '.join(SPLITS)}); rename it (e.g. train.xlsx, test_A.csv) or add a Split column")
    if "fps" not in cols and fps is None:
        raise ValueError(f"{sheet.path}: no frame-rate column (looked for {list(COLUMNS['fps'])}); "
                         f"give the frame rate of its videos (--fps)")
    rows = []
    for i, cells in enumerate(sheet.rows):
        if not any(cells):
            continue
        get = lambda f: cells[cols[f]] if f in cols else ""  # noqa: E731
        problems = []
        for f in ("filename", "subject"):
            if not get(f):
                problems.append(f"empty {used.get(f, f)}")
        split = parse_split(get("split")) if get("split") else file_split
        if split is None:
            problems.append(f"split {get('split')!r} is not one of {list(SPLITS)}")
        label = None
        if get("emotion"):
            label = parse_emotion(get("emotion"))
            if label is None:
                problems.append(f"unknown emotion {get('emotion')!r} (EmotionId 0-6 or one of {list(EMOTIONS)})")
        elif split == "train":
            problems.append(f"training row without a label ({used.get('emotion', 'EmotionId')} is empty)")
        rate = fps
        if get("fps"):
            rate, err = _number(get("fps"), "fps", float)
            if err or not rate:
                problems.append(err or "fps 0")
                rate = None
        marks = {}
        for f in ("onset", "apex", "offset"):
            marks[f] = None
            if get(f):
                marks[f], err = _number(get(f), f)
                if err:
                    problems.append(err)
        on, ap, off = marks["onset"], marks["apex"], marks["offset"]
        if on is not None and off is not None and on > off:
            problems.append(f"onset after offset ({on} > {off})")
        if ap is not None and ((on is not None and ap < on) or (off is not None and ap > off)):
            problems.append(f"apex {ap} outside onset..offset ({on}..{off})")
        rows.append(Row(sheet.path, i, get("filename"), get("subject"), split, label, rate, on, ap, off,
                        "; ".join(problems) or None))
    return AnnotationSheet(sheet.path, used, rows)


def find_sheets(root: Path) -> list[Path]:
    """Annotation sheets under ``root`` whose names say their split, train first."""
    found = [p for p in sorted(root.rglob("*")) if p.suffix.lower() in (".xlsx", ".csv") and p.is_file()
             and split_of_name(p.name) is not None and not p.name.startswith((".", "~$"))]
    return sorted(found, key=lambda p: (SPLITS.index(split_of_name(p.name)), str(p)))


def _folder(root: Path, row: Row) -> tuple[Path | None, str | None]:
    """The sample's frame folder: ``root/Filename``, or ``root/<split folder>/Filename``."""
    direct = inside(root, row.filename)
    if direct is None:
        return None, f"Filename {row.filename!r} leaves the data root {root}"
    if direct.is_dir():
        return direct, None
    for d in sorted(p for p in root.iterdir() if p.is_dir() and split_of_name(p.name) == row.split):
        nested = inside(d, row.filename)
        if nested is not None and nested.is_dir():
            return nested, None
    return None, f"clip folder {direct} does not exist"


def clip_sources(root: str | Path, sheets: list[AnnotationSheet]) -> tuple[list[ClipSource], list[Skip]]:
    """The usable rows of ``sheets`` as ClipSources, and a Skip for every row that is not."""
    root = Path(root)
    sources, skips = [], []
    seen: dict[str, str] = {}
    for sheet in sheets:
        for r in sheet.rows:
            if r.problem:
                skips.append(Skip(r.item, str(r.sheet), r.problem))
                continue
            folder, why = _folder(root, r)
            if folder is None:
                skips.append(Skip(r.item, str(r.sheet), why))
                continue
            if r.filename in seen:
                skips.append(Skip(r.item, str(r.sheet), f"same sample as {seen[r.filename]}"))
                continue
            seen[r.filename] = r.item
            try:
                paths, first = numbered_frames(folder)
            except ClipError as e:
                skips.append(Skip(r.item, str(folder), str(e)))
                continue
            marks = {}
            for name in ("onset", "apex", "offset"):
                n = getattr(r, name)
                marks[name] = None if n is None else n - first
            bad = [f"{k} {getattr(r, k)}" for k, v in marks.items() if v is not None and not 0 <= v < len(paths)]
            if bad:
                skips.append(Skip(r.item, str(folder), f"{', '.join(bad)} not among the folder's frames "
                                                       f"{first}..{first + len(paths) - 1}"))
                continue
            sources.append(ClipSource(
                clip_id=r.filename, dataset=DATASET, subject=r.subject, split=r.split, label=r.label,
                source_fps=r.fps, frame_paths=tuple(paths), **marks,
            ))
    return sources, skips
