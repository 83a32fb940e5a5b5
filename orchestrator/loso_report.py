"""LOSO results, both ways the field reports them, each labelled:

- **pooled**: the predictions of all folds concatenated, then scored once (the field's
  usual "UF1 under LOSO"). Concatenating predictions sums the folds' confusion matrices, so
  pooled scores are computed from the summed matrix.
- **per-fold**: each fold (one held-out subject) scored alone, then mean ± sample std over
  folds. A subject with one class, or a fold of a few clips, is scored as the metric
  definitions say (``trainables.metrics``: UF1 over the classes in truth or predictions,
  UAR over the classes in truth) — no class is skipped.

With several seeds, each seed's pooled and per-fold numbers are computed first, then
mean ± std over seeds. Reads MLflow only (run metrics and ``confusion_test.json``).
"""

from __future__ import annotations

import csv
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlflow import MlflowClient

from orchestrator.report import TrialResult, length_key, mean_std, pm
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

    @property
    def complete(self) -> bool:
        return self.n_folds == self.expected_folds


def confusions(uri: str, results: list[TrialResult]) -> dict[str, np.ndarray]:
    """Each run's test confusion matrix (its ``confusion_test.json``), by run id."""
    client = MlflowClient(uri)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in results:
            path = client.download_artifacts(r.run_id, "confusion_test.json", tmp)
            out[r.run_id] = np.asarray(json.loads(Path(path).read_text())["matrix"], np.int64)
    return out


def summarize(results: list[TrialResult], cms: dict[str, np.ndarray], classes: list[str],
              expected_folds: int) -> list[LosoSeed]:
    """One ``LosoSeed`` per (length, seed) from the fold runs and their confusion matrices."""
    out = []
    for length, seed in sorted({(r.length, r.seed) for r in results}, key=lambda k: (length_key(k[0]), k[1])):
        folds = [r for r in results if r.length == length and r.seed == seed]
        cm = sum(cms[r.run_id] for r in folds)
        support = cm.sum(axis=1)
        recall = {c: (float(cm[i, i] / support[i]) if support[i] else float("nan")) for i, c in enumerate(classes)}
        out.append(LosoSeed(
            length, seed, len(folds), expected_folds, scores_from_confusion(cm), recall, cm,
            mean_std([r.metrics["test_uf1"] for r in folds]), mean_std([r.metrics["test_uar"] for r in folds]),
            mean_std([r.metrics["test_acc"] for r in folds])))
    return out


def to_markdown(rows: list[LosoSeed], classes: list[str], title: str) -> str:
    lines = [f"### {title}", "",
             "| N frames | seed | folds | pooled UF1 (%) | pooled UAR (%) | pooled ACC (%) | per-fold UF1 (%) | per-fold UAR (%) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        folds = f"{r.n_folds}" if r.complete else f"{r.n_folds} of {r.expected_folds} (incomplete)"
        lines.append(f"| {r.length} | {r.seed} | {folds} | {r.pooled.uf1 * 100:.2f} | {r.pooled.uar * 100:.2f} | "
                     f"{r.pooled.acc * 100:.2f} | {pm(*r.fold_uf1)} | {pm(*r.fold_uar)} |")
    for length in sorted({r.length for r in rows}, key=length_key):
        rs = [r for r in rows if r.length == length]
        if len(rs) > 1:
            lines.append(f"| {length} | mean ± std over {len(rs)} seeds | | {pm(*mean_std([r.pooled.uf1 for r in rs]))} | "
                         f"{pm(*mean_std([r.pooled.uar for r in rs]))} | {pm(*mean_std([r.pooled.acc for r in rs]))} | "
                         f"{pm(*mean_std([r.fold_uf1[0] for r in rs]))} | {pm(*mean_std([r.fold_uar[0] for r in rs]))} |")
    lines += ["", "Pooled: the predictions of every fold concatenated, then scored once. Per-fold: each held-out "
              "subject scored alone, then mean ± sample std over folds. The epoch of every fold was chosen on "
              "validation subjects drawn from its training subjects.", ""]
    for length in sorted({r.length for r in rows}, key=length_key):
        rs = [r for r in rows if r.length == length]
        cm = sum(r.confusion for r in rs)
        recall = {c: np.nanmean([r.recall[c] for r in rs]) if any(not np.isnan(r.recall[c]) for r in rs) else np.nan
                  for c in classes}
        lines += [f"Pooled per-class recall, N = {length} (mean over seeds): "
                  + ", ".join(f"{c} {v * 100:.1f} %" if not np.isnan(v) else f"{c} n/a" for c, v in recall.items()), "",
                  f"Pooled confusion matrix, N = {length} (rows true, columns predicted"
                  + (f", summed over {len(rs)} seeds" if len(rs) > 1 else "") + "):", "",
                  "| true \\ predicted | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
        lines += [f"| {c} | " + " | ".join(str(int(v)) for v in cm[i]) + " |" for i, c in enumerate(classes)]
        lines.append("")
    return "\n".join(lines)


def write_csvs(rows: list[LosoSeed], results: list[TrialResult], out: Path) -> list[Path]:
    pooled, folds = out / "loso_pooled.csv", out / "loso_folds.csv"
    with open(pooled, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["n_frames", "seed", "folds", "pooled_uf1", "pooled_uar", "pooled_acc",
                    "fold_uf1_mean", "fold_uf1_std", "fold_uar_mean", "fold_uar_std"])
        for r in rows:
            w.writerow([r.length, r.seed, r.n_folds, r.pooled.uf1, r.pooled.uar, r.pooled.acc,
                        *r.fold_uf1, *r.fold_uar])
    with open(folds, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["n_frames", "seed", "held_out_subject", "run_id", "test_uf1", "test_uar", "test_acc", "best_epoch"])
        for r in results:
            m = r.metrics
            w.writerow([r.length, r.seed, r.fold, r.run_id, m["test_uf1"], m["test_uar"], m["test_acc"],
                        int(m["best_epoch"])])
    return [pooled, folds]
