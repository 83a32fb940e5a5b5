"""What a new SQLite tracking database costs: MLflow building it (every schema migration)
against a copy of MLflow's empty one (``orchestrator.tracking_db``), in one run, alternating.

Each is timed to the first answer of ``MlflowClient(uri).search_experiments()`` on a new
path, in this process (MLflow imported before timing). Prints the best and the median of
``--repeat`` of each and their ratio.

Usage: .venv/bin/python bench/tracking_db.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient

from orchestrator.tracking_db import seed_sqlite, template


def first_answer(uri: str, seed: bool) -> float:
    t = time.perf_counter()
    if seed:
        seed_sqlite(uri)
    MlflowClient(uri).search_experiments()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    template()  # made once per MLflow version (its own cost is one build, as below)
    times: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            for seed in (False, True):
                times[seed].append(first_answer(f"sqlite:///{Path(tmp) / f'{i}-{seed}.db'}", seed))
    print(f"| new SQLite tracking database, to MLflow's first answer ({args.repeat} each) | best | median |")
    print("|---|---|---|")
    for seed, what in ((False, "MLflow builds it (migrations)"), (True, "copy of the empty one (orch)")):
        print(f"| {what} | {min(times[seed]):.2f} s | {statistics.median(times[seed]):.2f} s |")
    print(f"| ratio (MLflow / copy) | {min(times[False]) / min(times[True]):.1f}x | "
          f"{statistics.median(times[False]) / statistics.median(times[True]):.1f}x |")
    print(f"(each, in order: MLflow {['%.2f' % t for t in times[False]]}, copy {['%.2f' % t for t in times[True]]}; "
          f"the first of MLflow's includes importing its SQL store)")


if __name__ == "__main__":
    main()
