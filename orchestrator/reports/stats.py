"""The statistics of the reports, all from scipy / statsmodels: mean and sample standard
deviation, the paired two-sided Wilcoxon signed-rank test, a 95 % bootstrap confidence
interval of a mean paired difference (fixed random state: a report is reproducible), and the
Holm correction over a family of comparisons."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0
BOOTSTRAP_RESAMPLES = 9999


def mean_std(x) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for a single value)."""
    a = np.asarray(list(x), dtype=np.float64)
    if not len(a):
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else math.nan


def wilcoxon_p(a, b) -> float:
    """Two-sided Wilcoxon signed-rank p of paired scores (scipy); NaN with fewer than 2
    pairs or when every pair is tied (no test)."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or np.all(a == b):
        return math.nan
    return float(wilcoxon(a, b).pvalue)


def smallest_p(n_pairs: int) -> float:
    """The smallest two-sided p the Wilcoxon signed-rank test can give over ``n_pairs``
    pairs: every difference of one sign (scipy's exact p of ranks 1..n; 2 / 2^n)."""
    from scipy.stats import wilcoxon

    if n_pairs < 1:
        return float("nan")
    if n_pairs > 20:  # far below any α by then
        return 0.0
    return float(wilcoxon(np.arange(1.0, n_pairs + 1)).pvalue)


def bootstrap_ci(diffs, confidence: float = CONFIDENCE, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """The bootstrap confidence interval of the mean of paired differences (scipy's
    ``bootstrap``, BCa, ``seed`` fixed); NaN with fewer than 2 differences or when they are
    all equal (no spread to resample)."""
    from scipy.stats import bootstrap

    d = np.asarray(diffs, np.float64)
    if len(d) < 2 or np.all(d == d[0]):
        return math.nan, math.nan
    res = bootstrap((d,), np.mean, confidence_level=confidence, n_resamples=BOOTSTRAP_RESAMPLES,
                    rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def holm(pvalues: list[float], alpha: float = ALPHA) -> list[float]:
    """Holm-corrected p-values (statsmodels ``multipletests``) over the p-values that are
    not NaN; NaN stays NaN (a comparison with no test is not in the family)."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, np.float64)
    out = np.full(len(p), np.nan)
    have = ~np.isnan(p)
    if have.any():
        out[have] = multipletests(p[have], alpha=alpha, method="holm")[1]
    return [float(x) for x in out]


@dataclass(frozen=True)
class Paired:
    """One score against a reference, paired (e.g. over seeds): ``a - b``."""

    n: int
    mean_diff: float
    ci: tuple[float, float]
    p: float
    p_holm: float = math.nan


def paired(a, b) -> Paired:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = a - b
    return Paired(len(d), float(d.mean()) if len(d) else math.nan, bootstrap_ci(d), wilcoxon_p(a, b))
