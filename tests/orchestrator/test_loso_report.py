"""Pooled and per-fold LOSO metrics against a hand-computed example (and scikit-learn)."""

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from orchestrator.protocols.loso import class_blocks, summarize, table1
from orchestrator.reports.report import Report
from orchestrator.reports.runs import TrialResult
from trainables.metrics import confusion, scores

CLASSES = ["negative", "positive", "surprise"]
# fold A: a subject with a single class (negative), one clip mistaken for positive
A_TRUE, A_PRED = [0, 0, 0], [0, 0, 1]
# fold B: two classes, one positive clip predicted as surprise
B_TRUE, B_PRED = [1, 1, 2], [1, 2, 2]


def _run(name, fold, t, p):
    s = scores(np.array(t), np.array(p), 3)
    return TrialResult(name, name, 0, "all", fold, {"test_uf1": s.uf1, "test_uar": s.uar, "test_acc": s.acc,
                                                   "best_epoch": 1.0})


def to_markdown(rows, classes, title):
    return Report("loso", [table1(rows, title), *class_blocks(rows, classes)]).markdown()


def test_pooled_and_per_fold_match_the_hand_computation():
    runs = [_run("ra", "A", A_TRUE, A_PRED), _run("rb", "B", B_TRUE, B_PRED)]
    cms = {"ra": confusion(np.array(A_TRUE), np.array(A_PRED), 3), "rb": confusion(np.array(B_TRUE), np.array(B_PRED), 3)}
    (row,) = summarize(runs, cms, CLASSES, expected_folds=2)

    # pooled: truth [0 0 0 1 1 2], predicted [0 0 1 1 2 2]
    # F1: negative 2*2/(2*2+0+1) = 0.8; positive 2*1/(2*1+1+1) = 0.5; surprise 2*1/(2*1+1+0) = 2/3
    assert row.pooled.uf1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    # recall: negative 2/3, positive 1/2, surprise 1/1
    assert row.pooled.uar == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert row.pooled.acc == pytest.approx(4 / 6)
    assert row.recall == pytest.approx({"negative": 2 / 3, "positive": 0.5, "surprise": 1.0})
    assert row.confusion.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    pooled_t, pooled_p = A_TRUE + B_TRUE, A_PRED + B_PRED
    assert row.pooled.uf1 == pytest.approx(f1_score(pooled_t, pooled_p, average="macro"))
    assert row.pooled.uar == pytest.approx(balanced_accuracy_score(pooled_t, pooled_p))

    # per fold. A: classes in truth or predictions are negative (F1 0.8) and positive
    # (never true, predicted once: F1 0) -> UF1 0.4; UAR over the true class only: 2/3.
    # B: positive 2*1/(2+0+1) = 2/3, surprise 2*1/(2+1+0) = 2/3 -> UF1 2/3; UAR (1/2 + 1)/2 = 0.75
    fold_uf1 = [0.4, 2 / 3]
    fold_uar = [2 / 3, 0.75]
    assert row.fold_uf1 == pytest.approx((np.mean(fold_uf1), abs(fold_uf1[1] - fold_uf1[0]) / np.sqrt(2)))
    assert row.fold_uar == pytest.approx((np.mean(fold_uar), abs(fold_uar[1] - fold_uar[0]) / np.sqrt(2)))
    assert runs[0].metrics["test_uf1"] == pytest.approx(f1_score(A_TRUE, A_PRED, average="macro"))
    # the two conventions differ on the same predictions: both are shown, each labelled
    assert abs(row.pooled.uf1 - row.fold_uf1[0]) > 0.1
    text = to_markdown([row], CLASSES, "t")
    assert "pooled UF1" in text and "per-fold UF1" in text and f"{row.pooled.uf1 * 100:.2f}" in text
    assert "| negative | 2 | 1 | 0 |" in text and "positive 50.0 %" in text


def test_a_missing_fold_marks_the_seed_incomplete():
    runs = [_run("ra", "A", A_TRUE, A_PRED)]
    cms = {"ra": confusion(np.array(A_TRUE), np.array(A_PRED), 3)}
    (row,) = summarize(runs, cms, CLASSES, expected_folds=2)
    assert not row.complete and "1 of 2 (incomplete)" in to_markdown([row], CLASSES, "t")
    assert np.isnan(row.recall["surprise"]) and "surprise n/a" in to_markdown([row], CLASSES, "t")
