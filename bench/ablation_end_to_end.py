"""The ablation end to end, solo against packed seeds, in one run on one machine.

Runs ``orch ablation`` twice on the same built-in benchmark store, in one workdir under two
experiment names (so neither reuses the other's runs): once with every seed its own Ray Tune
trial (``--pack-seeds 1``, the baseline) and once packed (``--pack-seeds K|auto``). The
store is built first and its build is not timed. Each command's wall time is the whole
command as a user runs it: Ray start, every trial, MLflow runs, the report.

Prints, per mode: trials trained, wall seconds, trials per minute, the packed run's
speed-up over solo, and the largest memory a Ray Tune trial's worker process held (RSS and
PSS, sampled every 2 s from /proc: PSS shares the pages it shares with other processes);
then how many packed runs equal their solo runs to the last bit (best epoch, best validation
UF1, every test metric; on CPU all of them should, docs/PERFORMANCE.md), how far apart the
two Table 4s are (mean UF1 and UAR per N, in percentage points), and how right each
command's ETA was (its progress lines, printed every 30 s, against the time truly left).

Usage: .venv/bin/python bench/ablation_end_to_end.py [--benchmark default|dfme-size] [--seeds 30]
       [--store PATH] [--lengths 4,8,12,16,all] [--epochs 16] [--pack auto] [--order solo,packed] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage.sources.synthetic.benchmark import benchmark_spec, ensure_store  # noqa: E402


class WorkerMemory:
    """The largest RSS and PSS (MB) of any Ray Tune trial worker (``ray::ImplicitFunc``)
    while it runs, sampled from /proc every ``every`` seconds."""

    def __init__(self, every: float = 2.0):
        self.every, self.rss, self.pss = every, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _sample(self):
        while not self._stop.wait(self.every):
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    if b"ray::ImplicitFunc" not in (proc / "cmdline").read_bytes():
                        continue
                    fields = dict(line.split(":", 1) for line in (proc / "smaps_rollup").read_text().splitlines()[1:])
                except (OSError, ValueError):
                    continue
                self.rss = max(self.rss, int(fields["Rss"].split()[0]) // 1024)
                self.pss = max(self.pss, int(fields["Pss"].split()[0]) // 1024)


def run(mode: str, pack: str, args, workdir: Path) -> dict:
    name = f"bench-{mode}"
    where = ["--store", str(args.store)] if args.store else ["--benchmark", args.benchmark]
    cmd = [str(Path(sys.executable).parent / "orch"), "ablation", *where,
           "--seeds", str(args.seeds), "--lengths", args.lengths, "--epochs", str(args.epochs),
           "--experiment", name, "--workdir", str(workdir), "--pack-seeds", pack]
    print(f"$ {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    lines: list[tuple[float, str]] = []  # each line of the command's output and when it came
    with WorkerMemory() as memory, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                                    env={**os.environ, "COLUMNS": "200"}) as proc:
        stderr: list[str] = []
        err = threading.Thread(target=lambda: stderr.append(proc.stderr.read()))  # drained alongside stdout
        err.start()
        for line in proc.stdout:
            lines.append((time.perf_counter() - t0, line))
        err.join()
    seconds = time.perf_counter() - t0
    stdout = "".join(line for _, line in lines)
    if proc.returncode != 0:
        sys.exit(f"{mode}: exit {proc.returncode}\n{stdout[-4000:]}\n{''.join(stderr)[-4000:]}")
    trained = re.search(r"(\d+) trained, (\d+) reused", stdout)
    packs = re.search(r"in (\d+) Ray Tune trials of up to (\d+) seeds", " ".join(stdout.split()))
    table = {}
    with open(workdir / "reports" / name / "table4.csv") as f:
        for row in csv.DictReader(f):
            table[row["n_frames"]] = row
    return {"mode": mode, "seconds": seconds, "trained": int(trained.group(1)), "reused": int(trained.group(2)),
            "tune_trials": int(packs.group(1)) if packs else int(trained.group(1)),
            "pack": int(packs.group(2)) if packs else 1, "table": table, "rss": memory.rss, "pss": memory.pss,
            "eta": eta_errors(lines)}


def eta_errors(lines: list[tuple[float, str]], at=(0.1, 0.25, 0.5, 0.75)) -> str:
    """How right the sweep's ETA was: its plain progress lines (printed every 30 s where the
    output is no terminal) against the time truly left until the sweep ended (the progress
    display's final render, printed when Tune's run returns), at the first line past each
    fraction of the sweep's length in ``at``."""
    shown = [(t, _seconds(m.group(1))) for t, line in lines
             if (m := re.search(r"elapsed, ETA (\d+:\d\d:\d\d)", line))]
    ends = [t for t, line in lines if re.search(r"epochs\s+\d+:\d\d:\d\d\s+ETA", line)]
    if not shown or not ends:
        return "no ETA shown"
    start, end = shown[0][0], ends[-1]  # the first line comes at the first trial's start
    out = []
    for f in at:
        later = [(t, eta) for t, eta in shown if t - start >= f * (end - start) and t < end]
        if later:
            t, eta = later[0]
            out.append(f"{f:.0%}: {eta:.0f} s for {end - t:.0f} s ({(eta - (end - t)) / (end - t):+.0%})")
    return "; ".join(out)


def _seconds(text: str) -> int:
    h, m, s = map(int, text.split(":"))
    return 3600 * h + 60 * m + s


def compare_runs(workdir: Path) -> tuple[int, list[str]]:
    """Packed trial runs against solo ones of the same name: how many have the very same
    best epoch, best validation UF1 and test metrics; the names of those that do not."""
    from mlflow import MlflowClient

    from orchestrator.workdir import Workdir

    client = MlflowClient(Workdir.resolve(workdir).tracking_uri)

    def final(name: str) -> dict[str, dict]:
        exp = client.get_experiment_by_name(f"bench-{name}")
        runs = client.search_runs([exp.experiment_id], filter_string="tags.`orch.run_kind` = 'trial'",
                                  max_results=5000)
        return {r.info.run_name: {k: v for k, v in r.data.metrics.items()
                                  if k in ("best_epoch", "best_val_uf1") or k.startswith("test")} for r in runs}

    solo, packed = final("solo"), final("packed")
    differ = sorted(n for n in solo if packed.get(n) != solo[n])
    return len(solo) - len(differ), differ


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--benchmark", default="default")
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--lengths", default="4,8,12,16,all")
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--pack", default="auto", help="the packed run's --pack-seeds")
    ap.add_argument("--order", default="solo,packed")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder, removed after")
    ap.add_argument("--store", type=Path, default=None, help="a store already built (instead of --benchmark)")
    args = ap.parse_args()
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="orch-bench-")
        args.workdir = Path(tmp.name)
    t0 = time.perf_counter()
    if args.store is None:
        ensure_store(benchmark_spec(args.benchmark), args.workdir / "stores")
    print(f"store {args.store or repr(args.benchmark)} ready in {time.perf_counter() - t0:.0f} s (not timed below); "
          f"{os.cpu_count()} CPUs; load before: {os.getloadavg()[0]:.2f}", flush=True)
    results = {}
    for mode in args.order.split(","):
        results[mode] = run(mode, "1" if mode == "solo" else args.pack, args, args.workdir)
        r = results[mode]
        print(f"{mode}: {r['trained']} trained in {r['tune_trials']} Tune trials, {r['seconds']:.0f} s, "
              f"load after {os.getloadavg()[0]:.2f}", flush=True)
    solo = results["solo"]
    print(f"\n{'mode':>8} {'largest pack':>12} {'trials':>7} {'Tune trials':>12} {'wall s':>8} {'trials/min':>11} "
          f"{'vs solo':>8} {'worker RSS/PSS MB':>18}")
    for r in results.values():
        print(f"{r['mode']:>8} {r['pack']:>12} {r['trained']:>7} {r['tune_trials']:>12} {r['seconds']:>8.0f} "
              f"{60 * r['trained'] / r['seconds']:>11.2f} {solo['seconds'] / r['seconds']:>7.2f}x "
              f"{r['rss']:>9} / {r['pss']:<6}")
    for r in results.values():
        print(f"{r['mode']}: ETA shown at a fraction of the sweep, for the time truly left: {r['eta']}")
    if "packed" in results:
        worst = 0.0
        for n, row in solo["table"].items():
            other = results["packed"]["table"][n]
            for k in ("uf1_mean", "uar_mean"):
                worst = max(worst, abs(float(row[k]) - float(other[k])))
        print(f"Table 4, packed vs solo: largest difference of a mean UF1/UAR {worst * 100:.4f} pp")
        same, differ = compare_runs(args.workdir)
        print(f"runs equal to their solo run to the last bit (best epoch, best val UF1, test metrics): "
              f"{same} of {same + len(differ)}" + (f"; differ: {', '.join(differ)}" if differ else ""))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
