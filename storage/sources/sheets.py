"""Annotation sheets (xlsx or csv) as a header and rows of strings, with the usual variants
of column names tolerated: case, spaces, underscores and hyphens are ignored when matching."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path


class SheetError(Exception):
    """A sheet that cannot be read as annotations; the message names the file and why."""


def normalise(name: object) -> str:
    return re.sub(r"[\s_\-]+", "", str(name or "")).casefold()


@dataclass
class Sheet:
    path: Path
    header: list[str]
    rows: list[list[str]]  # cell values as stripped strings ("" for empty), header excluded

    def columns(self, wanted: dict[str, tuple[str, ...]], optional: tuple[str, ...] = ()) -> dict[str, int]:
        """Map each wanted field to a column index. ``wanted`` maps a field to the names it
        may go by; a field in ``optional`` may be absent. Raises SheetError naming the
        missing field and the columns the sheet has."""
        index = {normalise(h): i for i, h in enumerate(self.header)}
        found: dict[str, int] = {}
        for field_, names in wanted.items():
            hit = next((index[normalise(n)] for n in names if normalise(n) in index), None)
            if hit is not None:
                found[field_] = hit
            elif field_ not in optional:
                raise SheetError(f"{self.path}: no column for {field_!r} (looked for {list(names)}; "
                                 f"the sheet has {self.header})")
        return found


def _cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def read_sheet(path: str | Path, sheet: str | None = None) -> Sheet:
    """The first sheet (or ``sheet``) of an .xlsx file, or a .csv file."""
    path = Path(path)
    if not path.is_file():
        raise SheetError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [[_cell(c) for c in r] for r in csv.reader(f)]
    elif suffix in (".xlsx", ".xlsm"):
        import openpyxl

        try:
            wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable workbook
            raise SheetError(f"{path}: not a readable xlsx workbook ({e})") from e
        try:
            ws = wb[sheet] if sheet else wb[wb.sheetnames[0]]
        except KeyError:
            raise SheetError(f"{path}: no sheet {sheet!r} (has {wb.sheetnames})") from None
        rows = [[_cell(c) for c in r] for r in ws.iter_rows(values_only=True)]
        wb.close()
    else:
        raise SheetError(f"{path}: annotation sheets must be .xlsx or .csv, not {suffix or 'no suffix'}")
    while rows and not any(rows[-1]):
        rows.pop()  # trailing empty rows
    if not rows:
        raise SheetError(f"{path}: empty")
    width = len(rows[0])
    return Sheet(path, rows[0], [r + [""] * (width - len(r)) for r in rows[1:]])
