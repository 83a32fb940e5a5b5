"""What orch costs per trial beyond the training itself: a full orch sweep against a bare Ray
Tune function trial doing the same training, both through Tune, on one Ray instance, in one run.

- orch: the real runner (``orchestrator.runner.run_sweep``) with ``trainables.trainable.train_trial``:
  the experiment and its parent run in MLflow (SQLite in a fresh workdir per round), per
  trial the store opened (once per process), the model built, its MLflow child run (params,
  tags, per-epoch metrics, artifacts: experiment.yaml, samples.json, predictions, confusion
  JSON + PNG), a checkpoint every ``checkpoint_every`` epochs and at the end, the final
  metrics, the run FINISHED, the parent closed;
- bare: a plain function trial doing the same arithmetic — the same splits loaded with
  ``load_split``, the same model and ``packed_fit.solo_fitter`` epochs, ``tune.report`` of the validation
  metrics each epoch, the test set evaluated with the selected parameters — and nothing else.

Both: ``reuse_actors=True``, the same resources per trial, the same trials (the ablation
protocol's plans: ``--seeds`` x ``--lengths``), on a Ray started here (``address="local"``,
``--cpus`` CPUs: with 1, one trial at a time). A warm-up round (2 trials each) first; then
each round runs bare, then orch. Each trial function logs its start and end, so the table
gives, for both and their difference (median over ``--repeat`` rounds, best in brackets):
the sweep's wall time per trial; a trial's own time on a warm worker (the median trial,
the first left out); Ray Tune's time between two trials; and the sweep's fixed cost (wall
time less the trials at their steady cost: start-up, driver, first use in a new process).

Usage: .venv/bin/python bench/trial_overhead.py [--seeds 5] [--lengths 4,all] [--epochs 3]
       [--repeat 2] [--cpus 1] [--benchmark tiny|default] [--profile DIR]
``--profile DIR``: cProfile of every orch trial (DIR/trial-NAME-*.prof) and of the orch
driver's ``run_sweep`` (DIR/driver-*.prof), for ``python -m pstats``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
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


@dataclass
class Sweep:
    wall: float  # the sweep, start to end
    inside: list[float]  # each trial function's own time, in the order they started
    gaps: list[float]  # between one trial's end and the next one's start (one trial at a time)

    @property
    def n(self) -> int:
        return len(self.inside)

    @property
    def per_trial(self) -> float:
        return self.wall / self.n

    @property
    def steady_inside(self) -> float:
        """A trial's own time once the worker is warm (the median, the first trial left out)."""
        return statistics.median(self.inside[1:] or self.inside)

    @property
    def steady_gap(self) -> float:
        return statistics.median(self.gaps) if self.gaps else 0.0

    @property
    def fixed(self) -> float:
        """What the sweep costs beyond its trials at their steady cost: Ray Tune's and the
        driver's start and end, worker start-up, imports and first-use costs."""
        return self.wall - self.n * (self.steady_inside + self.steady_gap)


def sweep(log: Path, wall: float) -> Sweep:
    rows = sorted((json.loads(line) for line in log.read_text().splitlines()), key=lambda r: r["start"])
    return Sweep(wall, [r["end"] - r["start"] for r in rows],
                 [b["start"] - a["end"] for a, b in zip(rows, rows[1:])])


def run_bare(exp: Experiment, plans, store: Path, storage: Path) -> Sweep:
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
    return sweep(log, wall)


def run_orch(exp: Experiment, plans, fingerprint: str, root: Path, profile: str) -> Sweep:
    """``run_sweep`` in a fresh workdir."""
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
    return sweep(log, wall)


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
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    bare, orch = [], []
    n = len(plans)
    with tempfile.TemporaryDirectory(dir=Workdir.resolve(args.workdir).root) as tmp:
        tmp = Path(tmp)
        run_bare(warm, plan(warm, store), store_path, tmp / "bare")
        run_orch(warm, plan(warm, store), store.fingerprint, tmp / "warm", "")
        for r in range(args.repeat):
            bare.append(run_bare(exp, plans, store_path, tmp / "bare"))
            orch.append(run_orch(exp, plans, store.fingerprint, tmp / f"orch{r}", args.profile))
            print(f"round {r + 1}: bare {bare[-1].per_trial:.2f} s/trial, orch {orch[-1].per_trial:.2f} s/trial",
                  flush=True)
    ray.shutdown()
    print(f"\n{n} trials of {args.epochs} epochs ({args.benchmark} store, lengths {args.lengths}), "
          f"{args.cpus} trial(s) at once, reuse_actors on; median over {args.repeat} round(s) (best in brackets)")
    print("\n| | bare Ray Tune trial | full orch trial | orch - bare |")
    print("|---|---|---|---|")
    rows = (("whole sweep / trials (s per trial)", lambda s: s.per_trial),
            ("a trial, warm worker: its function's own time (s)", lambda s: s.steady_inside),
            ("between two trials: Ray Tune (s)", lambda s: s.steady_gap),
            ("per trial at steady state: the two above (s)", lambda s: s.steady_inside + s.steady_gap),
            ("the sweep's fixed cost: start-up, driver, first use (s per sweep)", lambda s: s.fixed))
    for what, f in rows:
        b = statistics.median(f(x) for x in bare)
        o = statistics.median(f(x) for x in orch)
        bb, ob = min(f(x) for x in bare), min(f(x) for x in orch)
        print(f"| {what} | {b:.3f} ({bb:.3f}) | {o:.3f} ({ob:.3f}) | **{o - b:+.3f}** ({ob - bb:+.3f}) |")

if __name__ == "__main__":
    main()
