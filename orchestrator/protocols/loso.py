"""Leave one subject out (the paper's Table 1): one fold per subject. The seed orders all
subjects once; fold *s* takes the first ``validation_fraction`` of the *other* subjects in
that order as validation, the rest as train, and *s* alone as test — the held-out subject
is never a validation subject. Its search is nested: each fold searched on its own training
and validation subjects.

Its report, both ways the field reports LOSO, each labelled:

- **pooled**: the predictions of all folds concatenated, then scored once (the field's
  usual "UF1 under LOSO"). Concatenating predictions sums the folds' confusion matrices, so
  pooled scores are computed from the summed matrix.
- **per-fold**: each fold (one held-out subject) scored alone, then mean ± sample std over
  folds. A subject with one class, or a fold of a few clips, is scored as the metric
  definitions say (``trainables.metrics``: UF1 over the classes in truth or predictions,
  UAR over the classes in truth) — no class is skipped.

UF1, UAR and their average (AVG), pooled beside per-fold. With several seeds, each seed's
pooled and per-fold numbers are computed first, then mean ± std over seeds. Figures: the
pooled confusion matrix per N, and the per-fold scores as a distribution per N with the
pooled score beside them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from orchestrator.protocols.base import Protocol, ProtocolError, TrialPlan, register
from orchestrator.protocols.subjects import classes_of, divide, labelled_subjects, seed_order
from orchestrator.reports.context import ReportContext
from orchestrator.reports.figures import distribution_plot
from orchestrator.reports.format import pct, pm
from orchestrator.reports.report import Report, Table
from orchestrator.reports.runs import TrialResult, length_key
from orchestrator.reports.stats import mean_std
from storage.selection import Roles, Selection
from trainables.confusion_figure import confusion_png
from trainables.metrics import Scores, scores_from_confusion


@dataclass(frozen=True)
class LosoSeed:
    length: str
    seed: int
    n_folds: int
    expected_folds: int
    pooled: Scores
    recall: dict[str, float]  # pooled per-class recall (NaN: class absent from the truth)
    confusion: np.ndarray  # pooled, rows true, columns predicted
    fold_uf1: tuple[float, float]  # mean, std over folds
    fold_uar: tuple[float, float]
    fold_acc: tuple[float, float]
    fold_avg: tuple[float, float] = (float("nan"), float("nan"))  # of (UF1 + UAR) / 2 per fold

    @property
    def complete(self) -> bool:
        return self.n_folds == self.expected_folds

    @property
    def pooled_avg(self) -> float:
        return (self.pooled.uf1 + self.pooled.uar) / 2


def summarize(results: list[TrialResult], cms: dict[str, np.ndarray], classes: list[str],
              expected_folds: int) -> list[LosoSeed]:
    """One ``LosoSeed`` per (length, seed) from the fold runs and their confusion matrices."""
    out = []
    for length, seed in sorted({(r.length, r.seed) for r in results}, key=lambda k: (length_key(k[0]), k[1])):
        folds = [r for r in results if r.length == length and r.seed == seed]
        cm = sum(cms[r.run_id] for r in folds if r.run_id in cms)
        cm = cm if isinstance(cm, np.ndarray) else np.zeros((len(classes), len(classes)), np.int64)
        support = cm.sum(axis=1)
        recall = {c: (float(cm[i, i] / support[i]) if support[i] else float("nan")) for i, c in enumerate(classes)}
        m = [r.metrics for r in folds]
        out.append(LosoSeed(
            length, seed, len(folds), expected_folds, scores_from_confusion(cm), recall, cm,
            mean_std(x["test_uf1"] for x in m), mean_std(x["test_uar"] for x in m),
            mean_std(x["test_acc"] for x in m), mean_std((x["test_uf1"] + x["test_uar"]) / 2 for x in m)))
    return out


COLUMNS = ["N frames", "seed", "folds", "pooled UF1 (%)", "pooled UAR (%)", "pooled AVG (%)", "pooled ACC (%)",
           "per-fold UF1 (%)", "per-fold UAR (%)", "per-fold AVG (%)"]


def table1(rows: list[LosoSeed], title: str, notes: list[str] = ()) -> Table:
    cells = []
    for r in rows:
        folds = f"{r.n_folds}" if r.complete else f"{r.n_folds} of {r.expected_folds} (incomplete)"
        cells.append([r.length, str(r.seed), folds, pct(r.pooled.uf1), pct(r.pooled.uar), pct(r.pooled_avg),
                      pct(r.pooled.acc), pm(*r.fold_uf1), pm(*r.fold_uar), pm(*r.fold_avg)])
    for length in sorted({r.length for r in rows}, key=length_key):
        rs = [r for r in rows if r.length == length]
        if len(rs) > 1:
            cells.append([length, f"mean ± std over {len(rs)} seeds", "",
                          *(pm(*mean_std(f(r) for r in rs)) for f in (
                              lambda r: r.pooled.uf1, lambda r: r.pooled.uar, lambda r: r.pooled_avg,
                              lambda r: r.pooled.acc, lambda r: r.fold_uf1[0], lambda r: r.fold_uar[0],
                              lambda r: r.fold_avg[0]))])
    foot = ("Pooled: the predictions of every fold concatenated, then scored once. Per-fold: each held-out "
            "subject scored alone, then mean ± sample std over folds. AVG: (UF1 + UAR) / 2. The epoch of every "
            "fold was chosen on validation subjects drawn from its training subjects.")
    for n in notes:
        foot += " " + n + "."
    return Table(title, COLUMNS, cells, foot, "loso_pooled.csv",
                 ["n_frames", "seed", "folds", "expected_folds", "pooled_uf1", "pooled_uar", "pooled_avg", "pooled_acc",
                  "fold_uf1_mean", "fold_uf1_std", "fold_uar_mean", "fold_uar_std", "fold_avg_mean", "fold_avg_std"],
                 [[r.length, r.seed, r.n_folds, r.expected_folds, r.pooled.uf1, r.pooled.uar, r.pooled_avg,
                   r.pooled.acc, *r.fold_uf1, *r.fold_uar, *r.fold_avg] for r in rows])


def folds_table(results: list[TrialResult]) -> Table:
    """Every fold's run (a data file: loso_folds.csv)."""
    cols = ["n_frames", "seed", "held_out_subject", "run_id", "test_uf1", "test_uar", "test_acc", "best_epoch"]
    data = [[r.length, r.seed, r.fold, r.run_id, r.metrics["test_uf1"], r.metrics["test_uar"], r.metrics["test_acc"],
             int(r.metrics["best_epoch"])] for r in results]
    return Table("per-fold runs", cols, [], "", "loso_folds.csv", cols, data, shown=False)


def class_blocks(rows: list[LosoSeed], classes: list[str]) -> list:
    """Per N: the pooled per-class recall (a paragraph) and the pooled confusion matrix (a table)."""
    out = []
    for length in sorted({r.length for r in rows}, key=length_key):
        rs = [r for r in rows if r.length == length]
        cm = sum(r.confusion for r in rs)
        recall = {c: np.nanmean([r.recall[c] for r in rs]) if any(not np.isnan(r.recall[c]) for r in rs) else np.nan
                  for c in classes}
        out.append(f"Pooled per-class recall, N = {length} (mean over seeds): "
                   + ", ".join(f"{c} {v * 100:.1f} %" if not np.isnan(v) else f"{c} n/a" for c, v in recall.items()))
        out.append(Table(f"Pooled confusion matrix, N = {length} (rows true, columns predicted"
                         + (f", summed over {len(rs)} seeds" if len(rs) > 1 else "") + ")",
                         ["true \\ predicted", *classes],
                         [[c, *(str(int(v)) for v in cm[i])] for i, c in enumerate(classes)]))
    return out


def loso_folds(exp, store, classes: np.ndarray) -> list[TrialPlan]:
    p = exp.protocol
    subjects = labelled_subjects(store, Selection(p.use_splits), classes, "LOSO")
    if len(subjects) < 3:
        raise ProtocolError(f"{store.path}: LOSO needs at least 3 subjects (test, validation, train), "
                            f"found {len(subjects)}")
    out = []
    for s in exp.seeds:
        order = seed_order(subjects, s)
        for held_out in subjects:
            train, val = divide([x for x in order if x != held_out], p.validation_fraction)
            roles = Roles(Selection(p.use_splits, train), Selection(p.use_splits, val),
                          {"test": Selection(p.use_splits, (held_out,))})
            out += [TrialPlan(f"fold-{held_out}-seed{s}-N{n}", s, n, held_out, roles) for n in exp.lengths]
    return out


@register
class Loso(Protocol):
    name = "loso"

    def plan(self, exp, store) -> list[TrialPlan]:
        return loso_folds(exp, store, classes_of(exp, store))

    def search_plans(self, exp, store) -> list[TrialPlan]:
        """One plan per fold — the fold's own training and validation subjects (first seed
        and length), no test set — so each fold is searched without its held-out subject."""
        seed, length = exp.seeds[0], exp.lengths[0]
        folds = loso_folds(dataclasses.replace(exp, seeds=(seed,), lengths=(length,)), store, classes_of(exp, store))
        return [TrialPlan(f"search-fold-{q.fold}-seed{seed}-N{length}", seed, length, q.fold,
                          Roles(q.roles.train, q.roles.validation)) for q in folds]

    def count_text(self, exp, plans, n_trials) -> str:
        if not plans:
            return super().count_text(exp, plans, n_trials)
        folds = len({p.fold for p in plans})
        return f"{n_trials} trials = {folds} folds x {len(exp.seeds)} seeds x {len(exp.lengths)} lengths"

    def report(self, results: list[TrialResult], context: ReportContext) -> Report:
        exp = context.exp
        classes = list(context.classes)
        n_folds = len({t.fold for t in context.planned})
        cms, no_matrix = {}, []
        for r in results:
            m = context.confusion(r.run_id, "test")
            if m is None:
                no_matrix.append(r.name)
            else:
                cms[r.run_id] = m
        rows = summarize(results, cms, classes, n_folds)
        title = (f"{exp.name}: LOSO, {n_folds} subjects, {len(classes)} classes ({exp.trial.data.label_map}), "
                 f"{len(exp.seeds)} seeds, {exp.trial.train.epochs} epochs")
        notes = []
        done = {r.name for r in results}
        for length in sorted({t.length for t in context.planned}, key=length_key):
            for seed in sorted({t.seed for t in context.planned}):
                text = context.missing_text([t.name for t in context.planned if (t.length, t.seed) == (length, seed)],
                                            done, "folds")
                if text:
                    notes.append(f"N = {length}, seed {seed}: {text}")
        if no_matrix:
            notes.append(f"pooled without {len(no_matrix)} run(s) that have no confusion_test.json: "
                         + ", ".join(no_matrix[:8]))
        figures = {}
        lengths = sorted({r.length for r in rows}, key=length_key)
        for length in lengths:
            rs = [r for r in rows if r.length == length]
            figures[f"loso_confusion_N{length}.png"] = confusion_png(
                sum(r.confusion for r in rs), classes, f"{exp.name}: LOSO pooled over folds, N = {length}"
                + (f", summed over {len(rs)} seeds" if len(rs) > 1 else ""))
        if lengths:
            per = {k: [[r.metrics[f"test_{k}"] for r in results if r.length == n] for n in lengths] for k in ("uf1", "uar")}
            pooled = {k: [np.mean([getattr(r.pooled, k) for r in rows if r.length == n]) for n in lengths]
                      for k in ("uf1", "uar")}
            figures["loso_folds.png"] = distribution_plot(
                lengths, {"UF1": per["uf1"], "UAR": per["uar"]},
                f"{exp.name}: per-fold test scores (box, points) and pooled (diamond)",
                pooled={"UF1": pooled["uf1"], "UAR": pooled["uar"]})
        return Report("loso", [table1(rows, title, notes), *class_blocks(rows, classes), folds_table(results)], figures)
