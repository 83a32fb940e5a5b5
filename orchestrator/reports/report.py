"""A protocol's report: its tables (title, columns, rows of display text, footnote; the raw
values for CSV) and figures (PNG bytes), rendered to Markdown, LaTeX and CSV, written to the
workdir and logged on the sweep's parent run under ``reports/``."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.reports import render


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]  # display text, one list per row
    footnote: str = ""
    csv_name: str = ""  # the file its raw values go to ("" : none)
    csv_columns: list[str] = field(default_factory=list)
    csv_rows: list[list] = field(default_factory=list)
    shown: bool = True  # False: a data file only (not in the Markdown / LaTeX)

    def markdown(self, heading: str = "###") -> str:
        return render.markdown_table(self.title, self.columns, self.rows, self.footnote, heading)

    def latex(self) -> str:
        return render.latex_table(self.title, self.columns, self.rows, self.footnote)

    def csv(self) -> str:
        return render.csv_text(self.csv_columns, self.csv_rows)


@dataclass
class Report:
    """``blocks``: tables and paragraphs in reading order; the first table is the paper's."""

    stem: str  # the files' name: table4, split, loso
    blocks: list[Table | str]
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG
    commands: list[str] = field(default_factory=list)  # commands the user may run next (printed, not written)

    @property
    def tables(self) -> list[Table]:
        return [b for b in self.blocks if isinstance(b, Table)]

    def markdown(self) -> str:
        out, first = [], True
        for b in self.blocks:
            if isinstance(b, Table):
                if b.shown:
                    out.append(b.markdown("###" if first else "####"))
                    first = False
            else:
                out.append(b + "\n")
        return "\n".join(out)

    def latex(self) -> str:
        return "\n".join(b.latex() if isinstance(b, Table) else render.latex_paragraph(b)
                         for b in self.blocks if not isinstance(b, Table) or b.shown)

    def csv(self) -> str:
        """The paper's table (the first), raw values."""
        return self.tables[0].csv()

    def render(self, fmt: str) -> str:
        if fmt not in FORMATS:
            raise ValueError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
        return {"md": self.markdown, "latex": self.latex, "csv": self.csv}[fmt]()

    def files(self) -> dict[str, bytes]:
        out = {f"{self.stem}.md": self.markdown().encode(), f"{self.stem}.tex": self.latex().encode()}
        out.update({t.csv_name: t.csv().encode() for t in self.tables if t.csv_name})
        out.update(self.figures)
        return out


FORMATS = ("md", "latex", "csv")


def write(report: Report, folder: Path) -> list[Path]:
    """The report's files into ``folder``; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in report.files().items():
        (folder / name).write_bytes(data)
        written.append(folder / name)
    return written


def log_on_parent(uri: str, parent_run_id: str, report: Report) -> None:
    """The report's files as artifacts of the sweep's parent run, under ``reports/``."""
    from mlflow import MlflowClient

    from trainables.tracking_retry import Backoff

    client = MlflowClient(uri)
    with tempfile.TemporaryDirectory() as tmp:
        write(report, Path(tmp))
        Backoff().call(lambda: client.log_artifacts(parent_run_id, tmp, "reports"), "logging the reports on the parent run")
