"""A table as Markdown, CSV or LaTeX. Cells are text as the reader sees it ("85.00 ± 2.00");
LaTeX gets its special characters escaped (& % $ # _ { } ~ ^ \\) and the few non-ASCII
signs the tables use written as LaTeX math."""

from __future__ import annotations

import csv
import io

_LATEX = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
          "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}
_LATEX_SIGNS = {"±": r"$\pm$", "α": r"$\alpha$", "–": "--", "≤": r"$\leq$", "≥": r"$\geq$", "<": r"$<$",
                ">": r"$>$", "×": r"$\times$", "−": "$-$", "Δ": r"$\Delta$"}


def latex_escape(text: str) -> str:
    out = "".join(_LATEX.get(ch, ch) for ch in str(text))
    return "".join(_LATEX_SIGNS.get(ch, ch) for ch in out)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(title: str, columns: list[str], rows: list[list[str]], footnote: str = "",
                   heading: str = "###") -> str:
    lines = [f"{heading} {title}", "", "| " + " | ".join(map(_md_cell, columns)) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]
    if footnote:
        lines += ["", footnote]
    return "\n".join(lines) + "\n"


def latex_table(title: str, columns: list[str], rows: list[list[str]], footnote: str = "") -> str:
    """A ``table`` environment (booktabs rules: ``\\usepackage{booktabs}``)."""
    spec = "l" + "r" * (len(columns) - 1)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(title)}}}",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(c) for c in columns) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(c) for c in r) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if footnote:
        lines += [r"\par\smallskip", r"\begin{minipage}{\linewidth}\footnotesize " + latex_escape(footnote)
                  + r"\end{minipage}"]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def latex_paragraph(text: str) -> str:
    return latex_escape(text) + "\n"


def csv_text(columns: list[str], rows: list[list]) -> str:
    """Raw values (full precision; ``nan`` where there is none) with a header row."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(r)
    return buf.getvalue()
