"""The frame-length ablation (the paper's Table 4): train / validation / test are whole
store splits; one trial per seed and frame length N.

Its report: one row per N, test UF1 and UAR as mean ± sample std (ddof = 1) over seeds, with
the number of seeds (and which planned trials have no finished run); each N against all
frames, paired over the seeds both hold: the mean UF1 difference with its 95 % bootstrap
confidence interval, the two-sided Wilcoxon signed-rank p, and the Holm-corrected p over the
comparisons (``orchestrator.reports.stats``). The text ranks only what the corrected test
tells apart. Figures: UF1 / UAR against N with error bars, and the confusion matrix per N
summed over seeds on the test split."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from orchestrator.protocols.base import Protocol, TrialPlan, register
from orchestrator.protocols.subjects import classes_of, labelled_subjects, rows_or_fail
from orchestrator.reports import stats
from orchestrator.reports.context import ReportContext
from orchestrator.reports.figures import length_plot
from orchestrator.reports.format import p_text, pm, pp_ci
from orchestrator.reports.report import Report, Table
from orchestrator.reports.runs import TrialResult, length_key
from storage.selection import Roles, Selection
from trainables.confusion_figure import confusion_png

REFERENCE = "all"  # every N is compared with all frames


@dataclass(frozen=True)
class AblationRow:
    length: str
    n_seeds: int
    uf1_mean: float
    uf1_std: float
    uar_mean: float
    uar_std: float
    p_vs_all: float = math.nan  # paired Wilcoxon signed-rank p of UF1 against all frames (NaN: no test)
    n_pairs: int = 0  # the seeds the test pairs
    diff_vs_all: float = math.nan  # mean over those seeds of UF1(N) - UF1(all)
    ci_vs_all: tuple[float, float] = (math.nan, math.nan)  # its 95 % bootstrap confidence interval
    p_holm: float = math.nan  # p_vs_all Holm-corrected over the lengths compared


def ablation_table(results: list[TrialResult]) -> list[AblationRow]:
    rows = []
    ref = {r.seed: r.test_uf1 for r in results if r.length == REFERENCE}
    for length in sorted({r.length for r in results}, key=length_key):
        rs = [r for r in results if r.length == length]
        uf1, uar = stats.mean_std(r.test_uf1 for r in rs), stats.mean_std(r.test_uar for r in rs)
        row = AblationRow(length, len(rs), *uf1, *uar)
        if length != REFERENCE:
            pairs = [(r.test_uf1, ref[r.seed]) for r in rs if r.seed in ref]
            a, b = (np.asarray(x) for x in zip(*pairs)) if pairs else (np.array([]), np.array([]))
            c = stats.paired(a, b)
            row = AblationRow(length, len(rs), *uf1, *uar, c.p, c.n, c.mean_diff, c.ci)
        rows.append(row)
    holm = stats.holm([r.p_vs_all for r in rows])
    return [dataclasses.replace(r, p_holm=h) for r, h in zip(rows, holm)]


def verdict(r: AblationRow, alpha: float = stats.ALPHA) -> str:
    """What the corrected test says of N against all frames; a ranking only when it rejects."""
    if math.isnan(r.p_holm):
        return (f"N = {r.length}: no test ({r.n_pairs} seed(s) paired with all frames; the test needs at least "
                f"2 and one that differs)")
    if r.p_holm < alpha:
        side = "higher" if r.diff_vs_all > 0 else "lower"
        return (f"N = {r.length}: UF1 {side} than all frames by {abs(r.diff_vs_all) * 100:.2f} pp "
                f"(95 % CI {pp_ci(r.ci_vs_all)}; Holm p = {p_text(r.p_holm)} < α = {alpha})")
    return (f"N = {r.length}: not distinguishable from all frames at α = {alpha} (Holm p = {p_text(r.p_holm)}; "
            f"mean difference {r.diff_vs_all * 100:+.2f} pp, 95 % CI {pp_ci(r.ci_vs_all)})")


def n_of(n: int, planned: int | None) -> str:
    """A row's count, saying so when it is over fewer than planned ("2 of 3")."""
    return str(n) if planned is None or n >= planned else f"{n} of {planned}"


def table(rows: list[AblationRow], title: str, notes: list[str] = (), planned: dict[str, int] | None = None) -> Table:
    planned = planned or {}
    cells = [[r.length, pm(r.uf1_mean, r.uf1_std), pm(r.uar_mean, r.uar_std), n_of(r.n_seeds, planned.get(r.length)),
              "–" if r.length == REFERENCE or math.isnan(r.diff_vs_all)
              else f"{r.diff_vs_all * 100:+.2f} [{pp_ci(r.ci_vs_all)}]",
              p_text(r.p_vs_all), p_text(r.p_holm)] for r in rows]
    compared = [r for r in rows if r.length != REFERENCE]
    has_ref = any(r.length == REFERENCE for r in rows)
    foot = ("Test-split scores of the best-validation epoch; mean ± sample std (ddof=1) over seeds; n: the seeds. "
            "UF1 vs all: mean paired difference UF1(N) − UF1(all) in percentage points over the seeds both hold, "
            "with its 95 % bootstrap CI (scipy, BCa, fixed seed). p: two-sided paired Wilcoxon signed-rank test "
            "(scipy); Holm p: corrected over the comparisons (statsmodels). A difference the corrected test "
            "cannot tell from chance is not a ranking.")
    if compared and has_ref:
        foot += " " + "; ".join(verdict(r) for r in compared) + "."
        floor = min((r for r in compared if r.n_pairs), key=lambda r: r.n_pairs, default=None)
        if floor is not None and stats.smallest_p(floor.n_pairs) >= stats.ALPHA:
            foot += (f" With {floor.n_pairs} paired seeds the smallest p this test can give is "
                     f"{stats.smallest_p(floor.n_pairs):.2g}: it cannot tell any difference from chance at "
                     f"α = {stats.ALPHA} (that takes at least 6 seeds), so \"not distinguishable\" here is no sign "
                     f"of equal scores.")
    elif compared:
        foot += " No all-frames row: nothing is compared."
    for n in notes:
        foot += " " + n + "."
    csv_rows = [[r.length, r.n_seeds, r.uf1_mean, r.uf1_std, r.uar_mean, r.uar_std, r.diff_vs_all, *r.ci_vs_all,
                 r.p_vs_all, r.p_holm, r.n_pairs] for r in rows]
    return Table(title, ["N frames", "UF1 (%)", "UAR (%)", "n (seeds)", "UF1 vs all (pp) [95 % CI]", "Wilcoxon p",
                         "Holm p"], cells, foot, "table4.csv",
                 ["n_frames", "n_seeds", "uf1_mean", "uf1_std", "uar_mean", "uar_std", "uf1_diff_vs_all",
                  "uf1_diff_ci_low", "uf1_diff_ci_high", "uf1_wilcoxon_p_vs_all", "uf1_holm_p_vs_all", "n_pairs"],
                 csv_rows)


@register
class Ablation(Protocol):
    name = "ablation"

    def plan(self, exp, store) -> list[TrialPlan]:
        p = exp.protocol
        classes = classes_of(exp, store)
        train, val = Selection((p.train_split,)), Selection((p.validation_split,))
        labelled_subjects(store, train, classes, "the train split")
        labelled_subjects(store, val, classes, "the validation split")
        tests = {"test": Selection((p.test_splits[0],))}
        rows_or_fail(store, tests["test"], classes, "the test split")
        roles = Roles(train, val, tests)
        return [TrialPlan(f"seed{s}-N{n}", s, n, "", roles) for n in exp.lengths for s in exp.seeds]

    def names_without_store(self, exp) -> list[str]:
        return [f"seed{s}-N{n}" for n in exp.lengths for s in exp.seeds]

    def report(self, results: list[TrialResult], context: ReportContext) -> Report:
        exp = context.exp
        rows = ablation_table(results)
        title = f"{exp.name}: frame-length ablation ({len(exp.seeds)} seeds, {exp.trial.train.epochs} epochs)"
        notes, planned = [], {}
        for length in sorted({t.length for t in context.planned}, key=length_key):
            planned[length] = sum(t.length == length for t in context.planned)
            expected = [t.name for t in context.planned if t.length == length]
            text = context.missing_text(expected, {r.name for r in results}, "seeds")
            if text:
                notes.append(f"N = {length}: {text}")
        figures = {}
        if rows:
            figures["table4.png"] = length_plot(
                [r.length for r in rows], {"UF1": ([r.uf1_mean for r in rows], [r.uf1_std for r in rows]),
                                           "UAR": ([r.uar_mean for r in rows], [r.uar_std for r in rows])}, title)
        for length in [r.length for r in rows]:
            cms = [context.confusion(r.run_id, "test") for r in results if r.length == length]
            cms = [m for m in cms if m is not None]
            if cms and context.classes:
                figures[f"table4_confusion_N{length}.png"] = confusion_png(
                    sum(cms), list(context.classes),
                    f"{exp.name}: N = {length}, test split {exp.protocol.test_splits[0]}, summed over {len(cms)} seeds")
        return Report("table4", [table(rows, title, notes, planned)], figures)
