"""CAS(ME)^3 Part A, as the database distributes it: the annotation sheet
``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`` (Subject, Filename, Onset, Apex, Offset, AU,
Objective class, emotion), frames at ``part_A/{Subject}/{Filename}/color/{frame}.jpg`` at
30 fps, and the list of damaged frames ``error_info_damaged_image_partA.txt``.

A clip is the frames onset..offset. Every annotation row is read and kept: a row that
cannot be used as annotated carries its ``problem`` (apex outside [onset, offset], onset
after offset, offset 0, a length no micro-expression has, an unknown emotion, a value that
is not a frame number), named by its spreadsheet row, so a report can list it — nothing is
dropped without a line.

Label maps of the paper's two tasks: 7 classes as annotated (emotion values case-folded,
``Others`` = ``others``) and 3 classes (negative = anger + disgust + fear + sad, positive =
happy, surprise; ``others`` dropped).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from storage.ingest import Skip
from storage.sources.frames import ClipSource
from storage.sources.sheets import read_sheet

DATASET = "casme3_partA"
FPS = 30.0
LABEL_FILE = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
DAMAGED_FILE = "error_info_damaged_image_partA.txt"

# the 7 emotions as annotated (case-folded), the paper's 7-class task
EMOTIONS_7 = ("happy", "anger", "fear", "disgust", "surprise", "others", "sad")
CLASSES_3 = ("negative", "positive", "surprise")
TO_3_CLASSES = {"anger": "negative", "disgust": "negative", "fear": "negative", "sad": "negative",
                "happy": "positive", "surprise": "surprise", "others": None}
TASKS = {"7": EMOTIONS_7, "3": CLASSES_3}

# Rows longer than this are set aside: a micro-expression lasts under half a second; the
# sheet's 90th percentile is 55 frames. 300 frames (10 s at 30 fps) keeps every plausible
# row and sets aside the four far outliers (402 to 3456 frames). An option of the loader.
DEFAULT_MAX_CLIP_FRAMES = 300

COLUMNS = {
    "subject": ("Subject",), "filename": ("Filename", "File name", "Video"),
    "onset": ("Onset", "OnsetFrame"), "apex": ("Apex", "ApexFrame"), "offset": ("Offset", "OffsetFrame"),
    "au": ("AU", "Action Units"), "objective_class": ("Objective class",), "emotion": ("emotion", "Estimated Emotion"),
}
OPTIONAL = ("au", "objective_class")


@dataclass(frozen=True)
class AnnotationRow:
    index: int  # 0-based, after the header
    subject: str
    filename: str
    onset: int | None
    apex: int | None
    offset: int | None
    au: str
    objective_class: str
    emotion: str  # case-folded
    problem: str | None = None  # why the row cannot be used as annotated

    @property
    def sheet_row(self) -> int:
        """The row number a spreadsheet shows (header is row 1)."""
        return self.index + 2

    @property
    def frame_count(self) -> int | None:
        if self.onset is None or self.offset is None:
            return None
        return self.offset - self.onset + 1

    def label(self, task: str) -> str | None:
        """The row's class in ``task`` ("7" or "3"); None where the task drops it."""
        if task == "7":
            return self.emotion if self.emotion in EMOTIONS_7 else None
        if task == "3":
            return TO_3_CLASSES.get(self.emotion)
        raise ValueError(f"task: expected '7' or '3', got {task!r}")

    def frame_paths(self, root: Path) -> list[Path]:
        """``part_A/{Subject}/{Filename}/color/{n}.jpg`` for n = onset..offset, under ``root``."""
        folder = root / self.subject / self.filename / "color"
        return [folder / f"{n}.jpg" for n in range(self.onset, self.offset + 1)]


@dataclass
class Annotations:
    path: Path
    rows: list[AnnotationRow]
    max_clip_frames: int

    @property
    def usable(self) -> list[AnnotationRow]:
        return [r for r in self.rows if r.problem is None]

    @property
    def defective(self) -> list[AnnotationRow]:
        return [r for r in self.rows if r.problem is not None]

    @property
    def subjects(self) -> list[str]:
        return sorted({r.subject for r in self.rows}, key=_subject_key)

    def class_counts(self, task: str, usable_only: bool = False) -> Counter:
        rows = self.usable if usable_only else self.rows
        return Counter(lbl for r in rows if (lbl := r.label(task)) is not None)

    def report_lines(self) -> list[str]:
        """One line per row set aside: where it is and why."""
        return [f"{self.path.name} row {r.sheet_row} (index {r.index}, {r.subject}/{r.filename}): {r.problem}"
                for r in self.defective]


def _subject_key(s: str) -> tuple[int, str]:
    digits = "".join(ch for ch in s if ch.isdigit())
    return (int(digits) if digits else 1 << 30, s)


def _frame_number(value: str, what: str) -> tuple[int | None, str | None]:
    try:
        n = int(float(value))
    except ValueError:
        return None, f"{what} {value!r} is not a frame number"
    if float(value) != n or n < 0:
        return None, f"{what} {value!r} is not a frame number"
    return n, None


def _problem(onset: int, apex: int, offset: int, max_frames: int) -> str | None:
    if offset == 0:
        return "offset 0"
    if onset > offset:
        return f"onset after offset ({onset} > {offset})"
    if apex < onset:
        return f"apex before onset ({apex} < {onset})"
    if apex > offset:
        return f"apex after offset ({apex} > {offset})"
    n = offset - onset + 1
    if n > max_frames:
        return (f"{n} frames ({n / FPS:.0f} s at {FPS:.0f} fps): not a micro-expression "
                f"(longer than max_clip_frames={max_frames})")
    return None


def read_annotations(path: str | Path, max_clip_frames: int = DEFAULT_MAX_CLIP_FRAMES) -> Annotations:
    """Every row of the label sheet, each with its problem if it has one."""
    sheet = read_sheet(path)
    cols = sheet.columns(COLUMNS, optional=OPTIONAL)
    known = set(TO_3_CLASSES)
    rows = []
    for i, cells in enumerate(sheet.rows):
        if not any(cells):
            continue  # a blank line in the sheet
        get = lambda f: cells[cols[f]] if f in cols else ""  # noqa: E731
        problems = []
        frames = {}
        for f in ("onset", "apex", "offset"):
            frames[f], err = _frame_number(get(f), f)
            if err:
                problems.append(err)
        emotion = get("emotion").casefold()
        if not problems:
            p = _problem(frames["onset"], frames["apex"], frames["offset"], max_clip_frames)
            if p:
                problems.append(p)
        if emotion not in known:
            problems.append(f"unknown emotion {get('emotion')!r} (known: {sorted(known)})")
        for f in ("subject", "filename"):
            if not get(f):
                problems.append(f"empty {f}")
            elif "/" in get(f) or "\\" in get(f) or get(f) in (".", ".."):
                problems.append(f"{f} {get(f)!r} is not a plain folder name")
        rows.append(AnnotationRow(
            index=i, subject=get("subject"), filename=get("filename"), onset=frames["onset"],
            apex=frames["apex"], offset=frames["offset"], au=get("au"),
            objective_class=get("objective_class"), emotion=emotion,
            problem="; ".join(problems) or None,
        ))
    return Annotations(Path(path), rows, max_clip_frames)


@dataclass
class DamagedFrames:
    """``error_info_damaged_image_partA.txt``: frames that cannot be opened."""

    frames: dict[tuple[str, str], dict[int, str]]  # (subject, filename) -> {frame: reason}
    repeated_lines: list[tuple[int, int]]  # (line, line it repeats): the official list has some

    def of(self, subject: str, filename: str) -> dict[int, str]:
        return self.frames.get((subject, filename), {})


def read_damaged_frames(path: str | Path) -> DamagedFrames:
    """Lines ``Subject Filename N.jpg  reason``; a line that is not of that form is an error
    naming the line."""
    frames: dict[tuple[str, str], dict[int, str]] = {}
    first_seen: dict[tuple[str, str, int], int] = {}
    repeated = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=3)
        if len(parts) < 3 or not parts[2].lower().endswith(".jpg") or not parts[2][:-4].isdigit():
            raise ValueError(f"{path} line {lineno}: expected 'Subject Filename N.jpg reason', got {line!r}")
        key = (parts[0], parts[1], int(parts[2][:-4]))
        if key in first_seen:
            repeated.append((lineno, first_seen[key]))
            continue
        first_seen[key] = lineno
        frames.setdefault(key[:2], {})[key[2]] = parts[3].strip() if len(parts) > 3 else "damaged"
    return DamagedFrames(frames, repeated)


def find_file(root: Path, name: str) -> Path | None:
    """The official file ``name`` anywhere under ``root`` (the distribution nests them)."""
    hits = sorted(p for p in root.rglob(name) if p.is_file())
    return hits[0] if hits else None


def frames_root(root: Path) -> Path:
    """``root/part_A`` when the dataset root is given, else ``root`` itself."""
    return root / "part_A" if (root / "part_A").is_dir() else root


def clip_sources(root: str | Path, annotations: Annotations, damaged: DamagedFrames | None = None):
    """The usable rows as ``ClipSource``s (frames onset..offset under
    ``part_A/{Subject}/{Filename}/color``), and a ``Skip`` for every row that is not: its
    annotation problem, or a clip folder that does not exist. Labels are the 7 annotated
    emotions; the 3-class grouping is a label map applied by the experiment."""
    base = frames_root(Path(root))
    sources, skips = [], []
    seen: dict[str, int] = {}
    for r in annotations.rows:
        item = f"{annotations.path.name} row {r.sheet_row} ({r.subject}/{r.filename})"
        if r.problem:
            skips.append(Skip(item, str(annotations.path), r.problem))
            continue
        folder = base / r.subject / r.filename / "color"
        if not folder.is_dir():
            skips.append(Skip(item, str(folder), "clip folder does not exist"))
            continue
        clip_id = f"{r.subject}_{r.filename}_{r.onset}"
        if clip_id in seen:
            skips.append(Skip(item, str(annotations.path), f"same clip as row {seen[clip_id]}"))
            continue
        seen[clip_id] = r.sheet_row
        bad = damaged.of(r.subject, r.filename) if damaged else {}
        known_bad = {n - r.onset: why for n, why in bad.items() if r.onset <= n <= r.offset}
        sources.append(ClipSource(
            clip_id=clip_id, dataset=DATASET, subject=r.subject, split="all",
            label=r.emotion, source_fps=FPS, frame_paths=tuple(r.frame_paths(base)),
            onset=0, apex=r.apex - r.onset, offset=r.offset - r.onset, known_bad=known_bad,
        ))
    return sources, skips
