"""The one place results are computed: UF1, UAR, ACC and the confusion matrix.

UF1 is the mean over classes of 2TP / (2TP + FP + FN); UAR the mean over classes of
TP / (TP + FN); ACC the fraction correct. Which classes are averaged, exactly:

- UF1 averages every class that occurs in the truth or in the predictions. A class that is
  true but never predicted counts with F1 = 0; a class with neither has 0/0 and is left
  out. This is scikit-learn's ``f1_score(y_true, y_pred, average="macro")``.
- UAR averages the classes that occur in the truth (a class only ever predicted has no
  recall). This is scikit-learn's ``balanced_accuracy_score``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``C[i, j]`` = number of samples of true class i predicted as j."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name}: labels must be in [0, {num_classes}), got {y.min()}..{y.max()}")
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


@dataclass(frozen=True)
class Scores:
    uf1: float
    uar: float
    acc: float
    n: int

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in asdict(self).items()}


def scores_from_confusion(cm: np.ndarray) -> Scores:
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    support = cm.sum(axis=1)  # true count per class
    predicted = cm.sum(axis=0)
    denom = 2 * tp + (predicted - tp) + (support - tp)
    seen = denom > 0  # occurs in the truth or in the predictions
    f1 = 2 * tp[seen] / denom[seen]
    present = support > 0
    recall = tp[present] / support[present]
    n = int(cm.sum())
    return Scores(
        uf1=float(f1.mean()) if f1.size else 0.0,
        uar=float(recall.mean()) if recall.size else 0.0,
        acc=float(tp.sum() / n) if n else 0.0,
        n=n,
    )


def scores(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> Scores:
    return scores_from_confusion(confusion(y_true, y_pred, num_classes))
