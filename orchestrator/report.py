"""From MLflow runs to the paper's tables and plots. Reads MLflow only: what is reported is
exactly what the runs hold.

Table 4 layout (the frame-length ablation): one row per N, test UF1 and UAR as mean ± std
over seeds (sample standard deviation, ddof = 1), the number of seeds the row is over, and
each N against all frames: the paired Wilcoxon signed-rank test (scipy, two-sided) of the
UF1s of the seeds both hold.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlflow import MlflowClient

from trainables.mlflow_filter import mlflow_quote
from trainables.tracking import SWEEP_KEY_TAG, pick_run
from trainables.tracking_retry import Backoff


@dataclass(frozen=True)
class TrialResult:
    run_id: str
    name: str  # the trial's name in its protocol (the run's name)
    seed: int
    length: str
    fold: str
    metrics: dict[str, float]

    @property
    def test_uf1(self) -> float:
        return self.metrics["test_uf1"]

    @property
    def test_uar(self) -> float:
        return self.metrics["test_uar"]


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


def finished_runs(uri: str, experiment_id: str, sweep_key: str, names: Iterable[str] | None = None,
                  code_digest: str | None = None, across_versions: bool = False) -> list[TrialResult]:
    """The FINISHED runs of a sweep, one per trial name, restricted to ``names`` (an earlier
    invocation of the same sweep may have run other seeds or lengths). With ``code_digest``,
    the run each trial used (``tracking.pick_run``): this code's, or with ``across_versions``
    any code's; a run made by other code is otherwise not this sweep's result."""
    client = MlflowClient(uri)
    runs = Backoff().call(lambda: client.search_runs([experiment_id], filter_string=(
        f"tags.`{SWEEP_KEY_TAG}` = {mlflow_quote(sweep_key)} and attributes.status = 'FINISHED'"),
        max_results=50_000, order_by=["attributes.start_time DESC"]), "reading the sweep's runs")
    names = None if names is None else set(names)
    grouped: dict[str, list] = {}
    for r in runs:
        if names is None or r.info.run_name in names:
            grouped.setdefault(r.info.run_name, []).append(r)
    by_trial: dict[str, TrialResult] = {}
    for name, group in grouped.items():
        r = group[-1] if code_digest is None else pick_run(group, code_digest, across_versions)
        if r is None:
            continue
        p = r.data.params
        by_trial[name] = TrialResult(r.info.run_id, name, int(p["seed"]), p["length"], p.get("fold", ""),
                                     dict(r.data.metrics))
    return sorted(by_trial.values(), key=lambda t: (length_key(t.length), t.fold, t.seed))


def length_key(length: str) -> tuple[int, int]:
    return (1, 0) if length == "all" else (0, int(length))


def mean_std(x: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for a single value)."""
    a = np.asarray(x, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else math.nan


def ablation_table(results: list[TrialResult]) -> list[AblationRow]:
    rows = []
    all_frames = {r.seed: r.test_uf1 for r in results if r.length == "all"}
    for length in sorted({r.length for r in results}, key=length_key):
        rs = [r for r in results if r.length == length]
        uf1 = mean_std([r.test_uf1 for r in rs])
        uar = mean_std([r.test_uar for r in rs])
        pairs = [(r.test_uf1, all_frames[r.seed]) for r in rs if r.seed in all_frames] if length != "all" else []
        rows.append(AblationRow(length, len(rs), *uf1, *uar, *paired_wilcoxon(pairs)))
    return rows


def paired_wilcoxon(pairs: list[tuple[float, float]]) -> tuple[float, int]:
    """Two-sided Wilcoxon signed-rank p-value of paired scores (scipy; NaN when fewer than 2
    pairs or when every pair is tied) and the number of pairs."""
    from scipy.stats import wilcoxon

    if len(pairs) < 2:
        return math.nan, len(pairs)
    a, b = np.asarray(pairs, dtype=np.float64).T
    if np.all(a == b):
        return math.nan, len(pairs)
    return float(wilcoxon(a, b).pvalue), len(pairs)


def p_text(p: float) -> str:
    return "–" if math.isnan(p) else (f"{p:.2g}" if p >= 1e-4 else "< 0.0001")


def pm(mean: float, std: float, scale: float = 100.0) -> str:
    """``mean ± std`` in percent (``n/a`` for the std of one value)."""
    s = "n/a" if math.isnan(std) else f"{std * scale:.2f}"
    return f"{mean * scale:.2f} ± {s}"


def to_markdown(rows: list[AblationRow], title: str) -> str:
    lines = [f"### {title}", "",
             "| N frames | UF1 (%) | UAR (%) | seeds | UF1 vs all: Wilcoxon p |", "|---|---|---|---|---|"]
    lines += [f"| {r.length} | {pm(r.uf1_mean, r.uf1_std)} | {pm(r.uar_mean, r.uar_std)} | {r.n_seeds} | "
              f"{p_text(r.p_vs_all)} |" for r in rows]
    lines += ["", "Test-split scores of the best-validation epoch; mean ± sample std (ddof=1) over seeds. "
              "p: two-sided paired Wilcoxon signed-rank test of UF1 against all frames over the seeds both "
              "hold (scipy; not corrected for multiple comparisons); a difference it cannot tell from "
              "chance is not a ranking."]
    return "\n".join(lines) + "\n"


def write_csv(rows: list[AblationRow], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["n_frames", "n_seeds", "uf1_mean", "uf1_std", "uar_mean", "uar_std", "uf1_wilcoxon_p_vs_all",
                    "n_pairs"])
        for r in rows:
            w.writerow([r.length, r.n_seeds, r.uf1_mean, r.uf1_std, r.uar_mean, r.uar_std, r.p_vs_all, r.n_pairs])


def plot(rows: list[AblationRow], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    for attr, label in (("uf1", "UF1"), ("uar", "UAR")):
        mean = np.array([getattr(r, f"{attr}_mean") for r in rows]) * 100
        std = np.nan_to_num(np.array([getattr(r, f"{attr}_std") for r in rows]) * 100)
        ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=label)
    ax.set_xticks(x, [r.length for r in rows])
    ax.set_xlabel("frames per clip (N)")
    ax.set_ylabel("test score (%)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
