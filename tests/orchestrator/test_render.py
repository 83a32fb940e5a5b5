"""Tables render to Markdown, CSV and LaTeX with the same cells; LaTeX escapes its special
characters (& % $ # _ { } ~ ^ \\) and writes ± as math."""

import csv
import io

from orchestrator.reports.render import latex_escape
from orchestrator.reports.report import Report, Table


def test_latex_special_characters_are_escaped():
    assert latex_escape(r"a&b%c$d#e_f{g}h~i^j\k") == (r"a\&b\%c\$d\#e\_f\{g\}h\textasciitilde{}i"
                                                      r"\textasciicircum{}j\textbackslash{}k")
    assert latex_escape("85.00 ± 2.00") == r"85.00 $\pm$ 2.00"


def _report():
    t = Table("exp_1 & co: Table 4", ["N frames", "UF1 (%)", "class"], [["4", "85.00 ± 2.00", "happy&sad_x"],
                                                                       ["all", "90.00 ± n/a", "a|b"]],
              "p: 5 % level; 100% sure_not", "t.csv", ["n_frames", "uf1_mean"], [["4", 0.85], ["all", 0.9]])
    return Report("t", [t, "a note with _ and &"], {"t.png": b"\x89PNG"})


def test_markdown_latex_and_csv_hold_the_same_cells():
    rep = _report()
    md = rep.markdown()
    assert "### exp_1 & co: Table 4" in md and "| 4 | 85.00 ± 2.00 | happy&sad_x |" in md
    assert r"| all | 90.00 ± n/a | a\|b |" in md and "a note with _ and &" in md
    tex = rep.latex()
    assert r"\caption{exp\_1 \& co: Table 4}" in tex
    assert r"4 & 85.00 $\pm$ 2.00 & happy\&sad\_x \\" in tex
    assert r"p: 5 \% level; 100\% sure\_not" in tex and r"a note with \_ and \&" in tex
    assert "&sad" not in tex.replace(r"\&sad", "")  # no bare & left in a cell
    rows = list(csv.reader(io.StringIO(rep.csv())))
    assert rows == [["n_frames", "uf1_mean"], ["4", "0.85"], ["all", "0.9"]]
    assert set(rep.files()) == {"t.md", "t.tex", "t.csv", "t.png"}
    assert rep.render("latex") == tex and rep.render("md") == md
