import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

from trainables.metrics import confusion, scores


def _check(y, p, k):
    s = scores(y, p, k)
    assert s.uf1 == pytest.approx(f1_score(y, p, average="macro", zero_division=0), abs=1e-12)
    assert s.uar == pytest.approx(balanced_accuracy_score(y, p), abs=1e-12)
    assert s.acc == pytest.approx(accuracy_score(y, p), abs=1e-12)
    assert np.array_equal(confusion(y, p, k), confusion_matrix(y, p, labels=range(k)))


@pytest.mark.parametrize("seed", range(20))
def test_random_predictions_agree_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 8))
    y = rng.integers(0, k, size=int(rng.integers(5, 80)))
    p = np.where(rng.random(len(y)) < 0.6, y, rng.integers(0, k, size=len(y)))
    _check(y, p, k)


def test_class_absent_from_predictions_counts_as_zero():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 0, 1, 1, 1, 1])  # class 2 never predicted
    _check(y, p, 3)
    s = scores(y, p, 3)
    assert s.uf1 == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert s.uar == pytest.approx((1 + 1 + 0) / 3)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_class_only_predicted_and_class_absent_everywhere():
    y = np.array([0, 0, 1, 1])
    p = np.array([0, 2, 1, 1])  # class 2 predicted but never true; class 3 nowhere
    _check(y, p, 4)
    s = scores(y, p, 4)
    assert s.uf1 == pytest.approx((2 / 3 + 1 + 0) / 3)  # class 3 (0/0) is not averaged
    assert s.uar == pytest.approx((0.5 + 1) / 2)  # recall over true classes only


def test_bad_labels_are_refused():
    with pytest.raises(ValueError, match="y_pred"):
        scores(np.array([0, 1]), np.array([0, 5]), 3)
    with pytest.raises(ValueError, match="shape"):
        scores(np.array([0, 1]), np.array([0]), 3)
