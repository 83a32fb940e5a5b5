"""The dataset layouts ``orch ingest`` reads, behind one call: ``plan(format, source, ...)``
gives the clips to read, the rows already set aside with their reasons, the label
vocabulary, and lines saying what was read (files, row counts, columns used)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from storage.ingest import Skip
from storage.sources import casme3, dfme, manifest
from storage.sources.frames import ClipSource

FORMATS = ("dfme", "casme3", "manifest")


class SourceError(Exception):
    """A source that cannot be read at all (not one bad clip: those are skips)."""


@dataclass
class Plan:
    format: str
    sources: list[ClipSource]
    skipped: list[Skip]
    labels: list[str]
    lines: list[str] = field(default_factory=list)  # what was read, for the user


def plan(format: str, source: Path, annotations: list[Path] = (), damaged: Path | None = None,
         max_clip_frames: int = casme3.DEFAULT_MAX_CLIP_FRAMES, fps: float | None = None,
         labels: list[str] | None = None) -> Plan:
    """Read ``source`` in ``format``. Raises SourceError naming the file and the reason."""
    from storage.sources.sheets import SheetError

    try:
        if format == "casme3":
            return _casme3(source, annotations, damaged, max_clip_frames)
        if format == "dfme":
            return _dfme(source, annotations, fps)
        if format == "manifest":
            return _manifest(source, annotations, fps, labels)
    except (SheetError, ValueError) as e:
        raise SourceError(str(e)) from e
    raise SourceError(f"format {format!r}: expected one of {', '.join(FORMATS)}")


def _folder(source: Path) -> None:
    if not source.is_dir():
        raise SourceError(f"{source}: not a folder")


def _columns(used: dict[str, str]) -> str:
    return ", ".join(f"{f}={h!r}" for f, h in used.items())


def _casme3(source: Path, annotations: list[Path], damaged: Path | None, max_clip_frames: int) -> Plan:
    _folder(source)
    if len(annotations) > 1:
        raise SourceError("casme3: one annotation sheet (--annotations), the Part A label file")
    label_file = annotations[0] if annotations else casme3.find_file(source, casme3.LABEL_FILE)
    if label_file is None:
        raise SourceError(f"{source}: no {casme3.LABEL_FILE} under it (pass --annotations)")
    damaged_file = damaged or casme3.find_file(source, casme3.DAMAGED_FILE)
    table = casme3.read_annotations(label_file, max_clip_frames=max_clip_frames)
    bad = casme3.read_damaged_frames(damaged_file) if damaged_file else None
    sources, skips = casme3.clip_sources(source, table, bad)
    lines = [f"{label_file}: {len(table.rows)} rows, {len(table.subjects)} subjects, "
             f"{len(table.defective)} defective"]
    if bad is not None:
        lines.append(f"{damaged_file}: {sum(map(len, bad.frames.values()))} damaged frames"
                     + (f" ({len(bad.repeated_lines)} lines repeat others)" if bad.repeated_lines else ""))
    else:
        lines.append(f"no {casme3.DAMAGED_FILE} found: every frame is expected to be readable")
    return Plan("casme3", sources, skips, list(casme3.EMOTIONS_7), lines)


def _dfme(source: Path, annotations: list[Path], fps: float | None) -> Plan:
    _folder(source)
    files = list(annotations) or dfme.find_sheets(source)
    if not files:
        raise SourceError(f"{source}: no annotation sheets whose names say their split (train / test_A / "
                          f"test_B, .xlsx or .csv); pass --annotations")
    sheets = [dfme.read_annotations(f, fps=fps) for f in files]
    sources, skips = dfme.clip_sources(source, sheets)
    lines = [f"{s.path}: {len(s.rows)} rows; columns {_columns(s.columns_used)}" for s in sheets]
    return Plan("dfme", sources, skips, list(dfme.EMOTIONS), lines)


def _manifest(source: Path, annotations: list[Path], fps: float | None, labels: list[str] | None) -> Plan:
    if annotations:
        raise SourceError("manifest: SOURCE is the manifest file itself (no --annotations)")
    path = source / "manifest.csv" if source.is_dir() else source
    m = manifest.read_manifest(path, fps=fps, labels=labels)
    lines = [f"{m.path}: {len(m.sources) + len(m.skipped)} rows; columns {_columns(m.columns_used)}; "
             f"labels {m.labels}"]
    return Plan("manifest", m.sources, m.skipped, m.labels, lines)
