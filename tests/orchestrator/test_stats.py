"""The ablation's significance is scipy's and statsmodels' on the same pairs: Wilcoxon
p-values, bootstrap confidence intervals of the mean paired difference, Holm's correction;
and the text ranks a length only when the corrected test tells it from all frames."""

import math

import numpy as np
import pytest
from scipy.stats import bootstrap, wilcoxon
from statsmodels.stats.multitest import multipletests

from orchestrator.protocols.ablation import ablation_table, table
from orchestrator.reports import stats
from orchestrator.reports.runs import TrialResult


def _r(seed, length, uf1):
    return TrialResult(f"r{seed}{length}", f"seed{seed}-N{length}", seed, length, "", {"test_uf1": uf1, "test_uar": uf1})


def _scipy_ci(d):
    res = bootstrap((np.asarray(d),), np.mean, confidence_level=0.95, n_resamples=9999,
                    rng=np.random.default_rng(0))  # the report's fixed seed
    return res.confidence_interval.low, res.confidence_interval.high


def test_p_values_cis_and_holm_are_scipys_and_statsmodels():
    rng = np.random.default_rng(3)
    seeds = range(12)
    all_f = rng.uniform(0.6, 0.8, 12)
    by_len = {"4": all_f - rng.uniform(0.05, 0.15, 12),  # clearly worse on every seed
              "8": all_f + rng.normal(0, 0.05, 12),  # noise
              "16": all_f + rng.normal(0.01, 0.05, 12)}
    results = [_r(s, "all", all_f[s]) for s in seeds]
    results += [_r(s, n, v[s]) for n, v in by_len.items() for s in seeds if not (n == "16" and s == 0)]
    rows = {r.length: r for r in ablation_table(results)}
    want_p = {n: wilcoxon(v[1:] if n == "16" else v, all_f[1:] if n == "16" else all_f).pvalue
              for n, v in by_len.items()}
    order = ["4", "8", "16"]
    want_holm = multipletests([want_p[n] for n in order], alpha=0.05, method="holm")[1]
    for n, h in zip(order, want_holm):
        a, b = (by_len[n][1:], all_f[1:]) if n == "16" else (by_len[n], all_f)
        assert rows[n].p_vs_all == pytest.approx(want_p[n], rel=1e-12)
        assert rows[n].p_holm == pytest.approx(h, rel=1e-12)
        assert rows[n].diff_vs_all == pytest.approx(np.mean(a - b))
        assert rows[n].ci_vs_all == pytest.approx(_scipy_ci(a - b), rel=1e-12)
        assert rows[n].ci_vs_all[0] <= rows[n].diff_vs_all <= rows[n].ci_vs_all[1]
    assert rows["16"].n_pairs == 11 and math.isnan(rows["all"].p_holm)
    # the same report twice: the same intervals (fixed bootstrap seed)
    assert {r.length: r.ci_vs_all for r in ablation_table(results)} == {n: r.ci_vs_all for n, r in rows.items()}

    foot = table(list(rows.values()), "t").footnote
    assert rows["4"].p_holm < 0.05 and "N = 4: UF1 lower than all frames" in foot
    for n in ("8", "16"):
        if rows[n].p_holm >= 0.05:
            assert f"N = {n}: not distinguishable from all frames at α = 0.05 (Holm" in foot
            assert f"N = {n}: UF1 higher" not in foot and f"N = {n}: UF1 lower" not in foot


def test_a_difference_the_corrected_test_cannot_tell_is_not_ranked():
    # 3 seeds: the smallest two-sided exact Wilcoxon p is 0.25, whatever the scores
    results = [_r(s, "all", 0.8) for s in range(3)] + [_r(s, "16", 0.5 + 0.01 * s) for s in range(3)]
    row = {r.length: r for r in ablation_table(results)}["16"]
    assert row.p_vs_all == pytest.approx(wilcoxon([0.5, 0.51, 0.52], [0.8] * 3).pvalue) and row.p_holm >= 0.05
    foot = table(ablation_table(results), "t").footnote
    assert "N = 16: not distinguishable from all frames at α = 0.05 (Holm" in foot and "lower than" not in foot


def test_holm_skips_comparisons_without_a_test():
    got = stats.holm([0.01, math.nan, 0.04])
    want = multipletests([0.01, 0.04], method="holm")[1]
    assert got[0] == pytest.approx(want[0]) and math.isnan(got[1]) and got[2] == pytest.approx(want[1])
    assert all(math.isnan(x) for x in stats.bootstrap_ci([0.1]))
    assert all(math.isnan(x) for x in stats.bootstrap_ci([0.1, 0.1, 0.1]))


def test_the_smallest_p_a_number_of_seeds_allows_is_scipys():
    """With n paired seeds the exact two-sided Wilcoxon p is at least 2 / 2^n (every
    difference of one sign): the report says when that floor is above alpha."""
    g = np.random.default_rng(3)
    for n in range(2, 8):
        a = g.normal(size=n)
        one_sign = wilcoxon(a + 10.0, a).pvalue  # every difference +10... scipy's exact p
        assert stats.smallest_p(n) == pytest.approx(one_sign) == pytest.approx(2 / 2 ** n)
    rows = ablation_table([_r(s, n, u) for n, s, u in
                           [("4", 0, 0.2), ("4", 1, 0.3), ("all", 0, 0.6), ("all", 1, 0.7)]])
    foot = table(rows, "t").footnote
    assert "With 2 paired seeds the smallest p this test can give is 0.5" in foot
    many = [_r(s, n, u + s / 100) for s in range(8) for n, u in (("4", 0.2), ("all", 0.6))]
    assert "smallest p this test can give" not in table(ablation_table(many), "t").footnote
