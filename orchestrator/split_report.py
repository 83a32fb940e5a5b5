"""The DFME split protocol's results (the paper's Tables 2 and 3): per test split, UF1,
UAR and ACC of the best-validation epoch, mean ± sample std over seeds. A test split
without labels (the competition's test sets) has predictions only, and says so."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from orchestrator.report import TrialResult, length_key, mean_std, pm
from trainables.trainable import metric_prefix


@dataclass(frozen=True)
class SplitRow:
    length: str
    test: str
    n_seeds: int  # seeds with scores for this test split (0: unlabelled, predictions only)
    uf1: tuple[float, float]
    uar: tuple[float, float]
    acc: tuple[float, float]


def table(results: list[TrialResult], tests: tuple[str, ...]) -> list[SplitRow]:
    nan = (float("nan"), float("nan"))
    rows = []
    for length in sorted({r.length for r in results}, key=length_key):
        rs = [r for r in results if r.length == length]
        for t in tests:
            p = metric_prefix(t)
            scored = [r.metrics for r in rs if f"{p}uf1" in r.metrics]
            if not scored:
                rows.append(SplitRow(length, t, 0, nan, nan, nan))
                continue
            rows.append(SplitRow(length, t, len(scored), *(mean_std([m[f"{p}{k}"] for m in scored])
                                                          for k in ("uf1", "uar", "acc"))))
    return rows


def to_markdown(rows: list[SplitRow], title: str, validation_fraction: float) -> str:
    lines = [f"### {title}", "", "| N frames | test split | UF1 (%) | UAR (%) | ACC (%) | seeds |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r.n_seeds == 0:
            lines.append(f"| {r.length} | {r.test} | unlabelled: predictions only | | | |")
        else:
            lines.append(f"| {r.length} | {r.test} | {pm(*r.uf1)} | {pm(*r.uar)} | {pm(*r.acc)} | {r.n_seeds} |")
    lines += ["", f"Best-validation epoch (validation: {validation_fraction:.0%} of the training split's subjects, "
              "subject-disjoint, drawn per seed); mean ± sample std (ddof=1) over seeds."]
    return "\n".join(lines) + "\n"


def write_csv(rows: list[SplitRow], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["n_frames", "test_split", "n_seeds", "uf1_mean", "uf1_std", "uar_mean", "uar_std", "acc_mean", "acc_std"])
        for r in rows:
            w.writerow([r.length, r.test, r.n_seeds, *r.uf1, *r.uar, *r.acc])
