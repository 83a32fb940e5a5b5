"""What orch costs per trial beyond the training itself: a full orch sweep against a bare Ray
Tune function trial doing the same training, both through Tune, on one Ray instance, in one run.

- orch: the real runner (``orchestrator.runner.run_sweep``) with ``trainables.trainable.train_trial``:
  the experiment and its parent run in MLflow (SQLite in a fresh workdir per round), per
  trial the store opened (once per process), the model built, its MLflow child run (params,
  tags, per-epoch metrics, artifacts: experiment.yaml, samples.json, predictions, confusion
  JSON + PNG), a checkpoint every ``checkpoint_every`` epochs and at the end, the final
  metrics, the run FINISHED, the parent closed;
- bare: a plain function trial doing the same arithmetic — the same splits loaded with
  ``load_split``, the same model and ``Fitter`` epochs, ``tune.report`` of the validation
  metrics each epoch, the test set evaluated with the selected parameters — and nothing else.

Both: ``reuse_actors=True``, the same resources per trial, the same trials (the ablation
protocol's plans: ``--seeds`` x ``--lengths``). Each round runs bare, then orch; prints
seconds per trial (sweep wall time / trials) for each, best and median over ``--repeat``
rounds, and the overhead per trial = orch - bare. A warm-up round (2 trials each) first.

Usage: .venv/bin/python bench/trial_overhead.py [--seeds 5] [--lengths 4,all] [--epochs 3]
       [--repeat 2] [--cpus 1] [--benchmark tiny|default] [--profile DIR]
``--profile DIR``: cProfile of every orch trial (DIR/trial-*.prof) and of the orch driver
(DIR/driver.prof), for ``python -m pstats``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import statistics
import tempfile
import sys
import time
import uuid
from pathlib import Path

import ray
from ray import tune

from orchestrator.experiment import Experiment
from orchestrator.protocols import plan
from orchestrator.runner import run_sweep
from orchestrator.workdir import Workdir
from storage.sources.synthetic import SyntheticSpec, benchmark_spec, ensure_store
from storage.store import FrameStore
from trainables.config import TrainConfig, TrialConfig
from trainables.trainable import train_trial

sys.path.insert(0, str(Path(__file__).parent))
from bare_trial import bare_trial, timed  # noqa: E402  (bench/bare_trial.py)

# the tests' tiny store (tests/conftest.py TINY): 3 + 2 + 2 subjects x 7 clips, 0.2-0.3 s
TINY = SyntheticSpec(seed=7, size=16, subjects={"train": 3, "test_A": 2, "test_B": 2}, clips_per_subject=7,
                     duration_s=(0.2, 0.3), camera=128)


def in_trials(log: Path) -> float:
    """Seconds spent inside the trial functions (their own clock: start to end)."""
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return sum(r["end"] - r["start"] for r in rows)


def run_bare(exp: Experiment, plans, store: Path, storage: Path) -> tuple[float, float]:
    """(sweep wall seconds, seconds inside the trials)."""
    log = storage / f"bare-{uuid.uuid4().hex[:8]}.jsonl"
    storage.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    grid = tune.Tuner(
        tune.with_resources(timed(bare_trial, str(log)), {"cpu": exp.resources.cpus_per_trial}),
        param_space={"plan": tune.grid_search([p.to_dict() for p in plans]), "trial": exp.trial.to_dict(),
                     "store": str(store), "threads": exp.resources.threads},
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(name=log.stem, storage_path=str(storage), verbose=0),
    ).fit()
    wall = time.perf_counter() - t
    assert not grid.errors, grid.errors
    return wall, in_trials(log)


def run_orch(exp: Experiment, plans, fingerprint: str, root: Path, profile: str) -> tuple[float, float]:
    """(sweep wall seconds, seconds inside the trials) of ``run_sweep`` in a fresh workdir."""
    root.mkdir(parents=True)
    log = root / "trials.jsonl"
    prof = cProfile.Profile() if profile else None
    t = time.perf_counter()
    if prof:
        prof.enable()
    out = run_sweep(exp, plans, fingerprint, Workdir(root), console=None, show_progress=False,
                    trainable=timed(train_trial, str(log), profile), command="bench/trial_overhead.py")
    if prof:
        prof.disable()
        prof.dump_stats(os.path.join(profile, f"driver-{uuid.uuid4().hex[:6]}.prof"))
    wall = time.perf_counter() - t
    assert out.n_errored == 0 and out.n_trained == len(plans), out
    return wall, in_trials(log)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--lengths", default="4,all")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=1, help="Ray's CPUs: trials at once (1 CPU each)")
    ap.add_argument("--benchmark", default="tiny", help="tiny (the tests' store) or a built-in benchmark's name")
    ap.add_argument("--workdir", default=os.environ.get("ORCH_WORKDIR", "orch-work"),
                    help="where a built-in benchmark store is cached (WORKDIR/stores)")
    ap.add_argument("--profile", default="", help="write cProfile stats of the orch trials and driver here")
    args = ap.parse_args()
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    logging.getLogger("ray").setLevel(logging.WARNING)
    spec = TINY if args.benchmark == "tiny" else benchmark_spec(args.benchmark)
    store_path, _ = ensure_store(spec, Workdir.resolve(args.workdir).stores)
    store = FrameStore(store_path)
    exp = Experiment(name="overhead", seeds=tuple(range(args.seeds)), lengths=tuple(args.lengths.split(",")),
                     trial=TrialConfig(train=TrainConfig(epochs=args.epochs))).with_store(str(store_path))
    plans = plan(exp, store)
    warm = Experiment(name="warmup", seeds=(0,), lengths=exp.lengths[:2], trial=exp.trial).with_store(str(store_path))
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    bench = str(Path(__file__).resolve().parent)  # the workers import bare_trial from here
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (bench, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    bare, orch = [], []  # per round: (seconds per trial, of which inside the trial function)
    n = len(plans)
    with tempfile.TemporaryDirectory(dir=Workdir.resolve(args.workdir).root) as tmp:
        tmp = Path(tmp)
        run_bare(warm, plan(warm, store), store_path, tmp / "bare")
        run_orch(warm, plan(warm, store), store.fingerprint, tmp / "warm", "")
        for r in range(args.repeat):
            wall, inside = run_bare(exp, plans, store_path, tmp / "bare")
            bare.append((wall / n, inside / n))
            wall, inside = run_orch(exp, plans, store.fingerprint, tmp / f"orch{r}", args.profile)
            orch.append((wall / n, inside / n))
            print(f"round {r + 1}: bare {bare[-1][0]:.2f} s/trial ({bare[-1][1]:.2f} inside), "
                  f"orch {orch[-1][0]:.2f} s/trial ({orch[-1][1]:.2f} inside)", flush=True)
    ray.shutdown()
    print(f"\n{n} trials of {args.epochs} epochs ({args.benchmark} store, lengths {args.lengths}), "
          f"{args.cpus} trial(s) at once, reuse_actors on, {args.repeat} round(s); 'inside': the trial "
          f"function's own time, the rest is the sweep's (Ray Tune, the driver, worker start-up)")
    print("\n| seconds per trial | bare Ray Tune trial | full orch trial | overhead per trial (orch - bare) |")
    print("|---|---|---|---|")
    for what, f in (("best", min), ("median", statistics.median)):
        b, o = f(x[0] for x in bare), f(x[0] for x in orch)
        bi, oi = f(x[1] for x in bare), f(x[1] for x in orch)
        print(f"| {what}: whole sweep / trials | {b:.3f} | {o:.3f} | **{o - b:+.3f}** |")
        print(f"| {what}: inside the trial function | {bi:.3f} | {oi:.3f} | {oi - bi:+.3f} |")
        print(f"| {what}: the rest (Tune, driver, start-up) | {b - bi:.3f} | {o - oi:.3f} | {(o - oi) - (b - bi):+.3f} |")

if __name__ == "__main__":
    main()
