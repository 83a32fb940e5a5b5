"""Table 4 from trial results: means, sample stds, and each N against all frames by a paired
Wilcoxon signed-rank test (the p-values are scipy's on the same pairs, paired by seed)."""

import math

import numpy as np
import pytest
from scipy.stats import wilcoxon

from orchestrator.protocols.ablation import ablation_table, table
from orchestrator.reports.runs import TrialResult


def _result(seed: int, length: str, uf1: float) -> TrialResult:
    return TrialResult(f"r{seed}{length}", f"seed{seed}-N{length}", seed, length, "",
                       {"test_uf1": uf1, "test_uar": uf1 / 2})


def test_table4_pairs_each_length_with_all_frames_by_seed():
    rng = np.random.default_rng(0)
    all_uf1 = rng.uniform(0.8, 0.9, 12)
    n16 = all_uf1 - rng.uniform(0.0, 0.05, 12)
    n4 = rng.uniform(0.5, 0.9, 12)
    results = ([_result(s, "all", u) for s, u in enumerate(all_uf1)]
               + [_result(s, "16", u) for s, u in enumerate(n16)]
               # N=4 lacks seed 0: the test pairs the 11 seeds both lengths hold
               + [_result(s, "4", u) for s, u in enumerate(n4) if s > 0])
    rows = {r.length: r for r in ablation_table(results)}
    assert list(rows) == ["4", "16", "all"]
    assert rows["16"].p_vs_all == pytest.approx(wilcoxon(n16, all_uf1).pvalue)
    assert rows["16"].n_pairs == 12 and rows["16"].p_vs_all < 0.01
    assert rows["4"].p_vs_all == pytest.approx(wilcoxon(n4[1:], all_uf1[1:]).pvalue) and rows["4"].n_pairs == 11
    assert math.isnan(rows["all"].p_vs_all)
    assert rows["16"].uf1_mean == pytest.approx(n16.mean()) and rows["16"].uf1_std == pytest.approx(n16.std(ddof=1))
    md = table(list(rows.values()), "t").markdown()
    assert f"| 16 | {n16.mean() * 100:.2f} ± {n16.std(ddof=1) * 100:.2f} |" in md
    assert f"{rows['16'].p_vs_all:.2g} |" in md


def test_no_test_without_pairs_or_differences():
    rows = {r.length: r for r in ablation_table([_result(0, "all", 0.8), _result(0, "8", 0.7)])}
    assert math.isnan(rows["8"].p_vs_all) and rows["8"].n_pairs == 1
    tied = [_result(s, n, 0.5) for s in range(3) for n in ("all", "8")]
    assert math.isnan({r.length: r for r in ablation_table(tied)}["8"].p_vs_all)


def test_rows_over_fewer_seeds_than_planned_say_so_and_name_the_trials():
    from orchestrator import protocols
    from orchestrator.experiment import Experiment
    from orchestrator.reports.context import PlannedTrial, ReportContext

    exp = Experiment(name="t", seeds=(0, 1, 2), lengths=("4", "all"))
    planned = [PlannedTrial(f"seed{s}-N{n}", s, n) for n in ("4", "all") for s in range(3)]
    results = [_result(s, n, 0.5 + 0.1 * s) for n in ("4", "all") for s in range(3) if (s, n) != (2, "4")]
    rep = protocols.get("ablation").report(results, ReportContext(exp, planned, unfinished={"seed2-N4": "FAILED"}))
    md = rep.markdown()
    assert " | 2 of 3 | " in md and " | 3 | " in md  # N=4 over 2 of its 3 seeds; all frames complete
    assert "N = 4: n = 2 of 3 seeds; 1 without a finished run: seed2-N4 (FAILED)" in md
    rep = protocols.get("split").report(
        [r for r in results if r.seed != 1],
        ReportContext(exp, planned))  # seed 1 has no run at all
    assert "seed1-N4 (no run)" in rep.markdown() and "seed1-Nall (no run)" in rep.markdown()
