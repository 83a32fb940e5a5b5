"""A reused Ray Tune worker's memory across trials, with and without giving the freed heap
back after each trial (``trainables.memory.release``: ``malloc_trim``).

Runs the same solo ablation twice on the default benchmark, each on its own local Ray with
one CPU, so one worker process runs every trial in turn (``reuse_actors``): once through
``train_trial`` (which releases after each trial), once through the same trial without the
release. After each trial the worker appends its resident memory (``RssAnon``: its own
pages, not the mapped store or libraries) and its peak (``VmHWM``) to a log. The baseline
is measured in the same run: the same trials, in the same order, on the same store.

Usage: .venv/bin/python bench/worker_memory.py [--seeds 10] [--lengths 4,8,12,16,all] [--epochs 4]
       [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import ray

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.experiment import Experiment  # noqa: E402
from orchestrator.protocols import plan  # noqa: E402
from orchestrator.runner import run_sweep  # noqa: E402
from orchestrator.workdir import Workdir  # noqa: E402
from storage.sources.synthetic import benchmark_spec, ensure_store  # noqa: E402
from storage.store import FrameStore  # noqa: E402
from trainables.config import TrainConfig, TrialConfig  # noqa: E402


def _status() -> dict[str, int]:
    out = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("RssAnon", "VmHWM"):
            out[key] = int(value.split()[0]) // 1024
    return out


def logged(release: bool, log: str):
    """The orch trial (``release``) or the same trial without the release, logging memory."""
    def trial(config: dict) -> None:
        from trainables import trainable

        if release:
            trainable.train_trial(config)
        else:
            trainable._train_solo(config)  # what train_trial runs for a solo trial, less the release
        with open(log, "a") as f:
            f.write(json.dumps({"name": config["plan"]["name"], "pid": os.getpid(), **_status()}) + "\n")
    return trial


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--lengths", default="4,8,12,16,all")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--workdir", default=os.environ.get("ORCH_WORKDIR", "orch-work"),
                    help="where the built-in benchmark store is cached (WORKDIR/stores)")
    args = ap.parse_args()
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    store_path, _ = ensure_store(benchmark_spec("default"), Workdir.resolve(args.workdir).stores)
    store = FrameStore(store_path)
    exp = Experiment(name="memory", seeds=tuple(range(args.seeds)), lengths=tuple(args.lengths.split(",")),
                     trial=TrialConfig(train=TrainConfig(epochs=args.epochs))).with_store(str(store_path))
    plans = plan(exp, store)
    rows = {}
    with tempfile.TemporaryDirectory(dir=Workdir.resolve(args.workdir).root) as tmp:
        for mode, release in (("without release", False), ("orch (release)", True)):
            log = Path(tmp) / f"{release}.jsonl"
            (Path(tmp) / f"w{release}").mkdir()
            ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
            try:
                out = run_sweep(exp, plans, store.fingerprint, Workdir(Path(tmp) / f"w{release}"), console=None,
                                show_progress=False, trainable=logged(release, str(log)), command="worker_memory")
            finally:
                ray.shutdown()
            assert out.n_errored == 0 and out.n_trained == len(plans), out
            rows[mode] = [json.loads(line) for line in log.read_text().splitlines()]
            print(f"{mode}: after each trial, MB: " + " ".join(str(r["RssAnon"]) for r in rows[mode]), flush=True)
    print(f"\n{len(plans)} solo trials of {args.epochs} epochs (lengths {args.lengths}, in that order) on one reused "
          f"worker, default benchmark\n")
    print(f"{'':>16} {'workers':>8} {'RSS after trial 1':>18} {'after the last':>15} {'peak':>6}   (MB, own pages)")
    for mode, rs in rows.items():
        print(f"{mode:>16} {len({r['pid'] for r in rs}):>8} {rs[0]['RssAnon']:>18} {rs[-1]['RssAnon']:>15} "
              f"{max(r['VmHWM'] for r in rs):>6}")


if __name__ == "__main__":
    main()
