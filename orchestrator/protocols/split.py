"""The DFME split protocol (the paper's Tables 2 and 3): the training split's subjects are
shuffled by the seed, the first ``validation_fraction`` of them (at least one) validate, the
rest train; every test split is reported. Its search: the same division, no test set.

Its report: per N and test split, UF1, UAR and ACC of the best-validation epoch, mean ±
sample std over seeds. A test split without labels (the competition's test sets) has
predictions only, and says so. Figures: UF1 against N per test split, and the confusion
matrix per N and labelled test split, summed over seeds."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from orchestrator.protocols.ablation import n_of
from orchestrator.protocols.base import Protocol, ProtocolError, TrialPlan, register
from orchestrator.protocols.subjects import classes_of, divide, labelled_subjects, rows_or_fail, seed_order
from orchestrator.reports import stats
from orchestrator.reports.context import ReportContext
from orchestrator.reports.figures import length_plot
from orchestrator.reports.format import pm
from orchestrator.reports.report import Report, Table
from orchestrator.reports.runs import TrialResult, length_key
from storage.selection import Roles, Selection
from trainables.confusion_figure import confusion_png
from trainables.trainable import metric_prefix

NAN2 = (math.nan, math.nan)


@dataclass(frozen=True)
class SplitRow:
    length: str
    test: str
    n_seeds: int  # seeds with scores for this test split (0: unlabelled, predictions only)
    uf1: tuple[float, float]
    uar: tuple[float, float]
    acc: tuple[float, float]


def split_table(results: list[TrialResult], tests: tuple[str, ...]) -> list[SplitRow]:
    rows = []
    for length in sorted({r.length for r in results}, key=length_key):
        rs = [r for r in results if r.length == length]
        for t in tests:
            p = metric_prefix(t)
            scored = [r.metrics for r in rs if f"{p}uf1" in r.metrics]
            if not scored:
                rows.append(SplitRow(length, t, 0, NAN2, NAN2, NAN2))
                continue
            rows.append(SplitRow(length, t, len(scored), *(stats.mean_std([m[f"{p}{k}"] for m in scored])
                                                          for k in ("uf1", "uar", "acc"))))
    return rows


def table(rows: list[SplitRow], title: str, validation_fraction: float, notes: list[str] = (),
          planned: dict[str, int] | None = None) -> Table:
    planned, cells = planned or {}, []
    for r in rows:
        if r.n_seeds == 0:
            cells.append([r.length, r.test, "unlabelled: predictions only", "", "", ""])
        else:
            cells.append([r.length, r.test, pm(*r.uf1), pm(*r.uar), pm(*r.acc), n_of(r.n_seeds, planned.get(r.length))])
    foot = (f"Best-validation epoch (validation: {validation_fraction:.0%} of the training split's subjects, "
            "subject-disjoint, drawn per seed); mean ± sample std (ddof=1) over seeds; n: the seeds.")
    for n in notes:
        foot += " " + n + "."
    return Table(title, ["N frames", "test split", "UF1 (%)", "UAR (%)", "ACC (%)", "n (seeds)"], cells, foot,
                 "split.csv", ["n_frames", "test_split", "n_seeds", "uf1_mean", "uf1_std", "uar_mean", "uar_std",
                               "acc_mean", "acc_std"],
                 [[r.length, r.test, r.n_seeds, *r.uf1, *r.uar, *r.acc] for r in rows])


def split_roles(exp, store, classes: np.ndarray, seed: int, tests: dict[str, Selection]) -> Roles:
    p = exp.protocol
    subjects = labelled_subjects(store, Selection((p.train_split,)), classes, "the train split")
    if len(subjects) < 2:
        raise ProtocolError(f"{store.path}: the train split has {len(subjects)} subject(s); dividing it into "
                            f"subject-disjoint train and validation needs at least 2")
    train, val = divide(seed_order(subjects, seed), p.validation_fraction)
    return Roles(Selection((p.train_split,), train), Selection((p.train_split,), val), tests)


@register
class Split(Protocol):
    name = "split"

    def plan(self, exp, store) -> list[TrialPlan]:
        classes = classes_of(exp, store)
        tests = {t: Selection((t,)) for t in exp.protocol.test_splits}
        for t, sel in tests.items():
            rows_or_fail(store, sel, classes, f"test split {t!r}")
        return [TrialPlan(f"seed{s}-N{n}", s, n, "", split_roles(exp, store, classes, s, tests))
                for n in exp.lengths for s in exp.seeds]

    def search_plans(self, exp, store) -> list[TrialPlan]:
        """One plan: the train split divided as the protocol divides it (first seed and length), no test set."""
        seed, length = exp.seeds[0], exp.lengths[0]
        roles = split_roles(exp, store, classes_of(exp, store), seed, {})
        return [TrialPlan(f"search-seed{seed}-N{length}", seed, length, "", roles)]

    def report(self, results: list[TrialResult], context: ReportContext) -> Report:
        exp = context.exp
        tests = exp.protocol.test_splits
        rows = split_table(results, tests)
        title = f"{exp.name}: DFME split protocol ({len(exp.seeds)} seeds, {exp.trial.train.epochs} epochs)"
        notes, planned = [], {}
        for length in sorted({t.length for t in context.planned}, key=length_key):
            planned[length] = sum(t.length == length for t in context.planned)
            text = context.missing_text([t.name for t in context.planned if t.length == length],
                                        {r.name for r in results}, "seeds")
            if text:
                notes.append(f"N = {length}: {text}")
        figures = {}
        lengths = sorted({r.length for r in rows}, key=length_key)
        labelled = [t for t in tests if any(r.test == t and r.n_seeds for r in rows)]
        if lengths and labelled:
            series = {}
            for t in labelled:
                rs = {r.length: r for r in rows if r.test == t}
                series[f"UF1 {t}"] = ([rs[n].uf1[0] for n in lengths], [rs[n].uf1[1] for n in lengths])
            figures["split.png"] = length_plot(lengths, series, title)
        for length in lengths:
            for t in labelled:
                cms = [m for m in (context.confusion(r.run_id, t) for r in results if r.length == length)
                       if m is not None]
                if cms and context.classes:
                    figures[f"split_confusion_N{length}_{t}.png"] = confusion_png(
                        sum(cms), list(context.classes), f"{exp.name}: N = {length}, {t}, summed over {len(cms)} seeds")
        commands = []
        if exp.save_model and results:
            first = results[0]
            commands.append(f"a CCAC2024 submission from run {first.name}: orch predict --run {first.run_id} "
                            f"--split {tests[-1]} --out prediction.txt")
        return Report("split", [table(rows, title, exp.protocol.validation_fraction, notes, planned)], figures, commands)
