"""Live progress of a sweep in the driver: trials done / running / failed, epochs, ETA.

The bar and the ETA count work, not epochs: an epoch of a trial weighs its estimated cost
(``epoch_costs``: at all frames an epoch costs several times one at N = 4) and every Ray
Tune trial its fixed cost (``trial_cost``), so a sweep that starts with its costliest trials
(``--pack-seeds auto`` orders them so) is not promised the speed of its first minutes'
few, slow epochs. The ETA is the work left at the rate of the work trained so far, timed
from the first trial's start; work that was not trained (runs reused, a trial restored
past its checkpoint, epochs an early stop or a failure skipped) is neither in that rate
nor left to do.

Where the console is no terminal (a log file, ``nohup``, a batch job) the bar cannot redraw,
so the same counts and ETA are printed as a plain line, at most once every ``every`` seconds."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text
from ray.tune import Callback


class _Eta(ProgressColumn):
    """The sweep's ETA as ``SweepProgress.eta`` gives it, counting down between events."""

    def __init__(self, progress: "SweepProgress"):
        super().__init__()
        self.progress = progress

    def render(self, task) -> Text:
        return Text(_eta_text(self.progress.eta()), style="progress.remaining")


def _eta_text(left: float | None) -> str:
    return f"ETA {_clock_text(left) if left is not None else '-:--:--'}"


def _clock_text(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


class SweepProgress(Callback):
    """A Ray Tune callback drawing a rich progress bar over all epochs of all trials."""

    def __init__(self, n_trials: int, epochs: int, console: Console | None = None, enabled: bool = True,
                 packs: int = 0, epoch_costs: dict[str, float] | None = None, trial_cost: float = 0.0,
                 tune_trials: int | None = None, clock=time.monotonic, every: float = 30.0):
        """``n_trials``: seeds to train (a pack of K counts K); ``packs``: the Tune trials they
        are packed into (0: not packed). ``epoch_costs``: one epoch's estimated cost of each
        plan by name (a pack's member or a solo trial; default: 1 each); ``trial_cost``: what
        each of the ``tune_trials`` Ray Tune trials (default ``n_trials``) costs besides its
        epochs, in the same units. ``every``: seconds between two plain progress lines where
        the console is no terminal."""
        self.n_trials, self.epochs, self.packs = n_trials, epochs, packs
        self.done = self.failed = 0
        self.running: dict[str, int] = {}  # trial id -> its seeds
        self._reused: dict[str, int] = {}
        self._epoch_seen: dict[str, int] = {}
        self.costs = dict(epoch_costs or {})
        self._mean_cost = sum(self.costs.values()) / len(self.costs) if self.costs else 1.0
        self.trial_cost = trial_cost
        tune_trials = n_trials if tune_trials is None else tune_trials
        self.total_work = n_trials * epochs * self._mean_cost + tune_trials * trial_cost
        self.trained = self.skipped = 0.0  # work done by training here / done without it
        self.epochs_done = 0
        self._clock = clock
        self._t0: float | None = None  # the first trial's start
        self._deadline: float | None = None  # when the sweep ends at the rate of the last event
        self.every = every
        self._plain = console if enabled and console is not None and not console.is_terminal else None
        self._last_line: float | None = None
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("{task.fields[epochs]}/" + str(n_trials * epochs) + " epochs"), TimeElapsedColumn(),
            _Eta(self), console=console, disable=not enabled, transient=False,
        )
        self._task = self._progress.add_task(self._describe(), total=self.total_work, epochs=0)

    @property
    def reused(self) -> int:
        return sum(self._reused.values())

    def eta(self) -> float | None:
        """Seconds left: the work left at the rate trained so far (None until an epoch is done)."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - self._clock())

    def _describe(self) -> str:
        reused = f", {self.reused} reused" if self.reused else ""
        packs = f" in {len(self.running)} pack{'s' if len(self.running) != 1 else ''}" if self.packs else ""
        return (f"trials {self.done}/{self.n_trials} done, {sum(self.running.values())} running{packs}, "
                f"{self.failed} failed{reused}")

    def _add(self, trained: float = 0.0, skipped: float = 0.0, epochs: int = 0) -> None:
        self.trained += trained
        self.skipped += skipped
        self.epochs_done += epochs
        now = self._clock()
        if self.trained > 0 and self._t0 is not None and now > self._t0:
            left = max(0.0, self.total_work - self.trained - self.skipped)
            self._deadline = now + left * (now - self._t0) / self.trained
        self._update()

    def _update(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.trained + self.skipped, epochs=self.epochs_done,
                                  description=self._describe())
        if self._plain is not None and self._t0 is not None:
            now = self._clock()
            if self._last_line is None or now - self._last_line >= self.every:
                self._last_line = now
                self._plain.print(self.line(), soft_wrap=True, highlight=False)

    def line(self) -> str:
        """The progress as one plain line: counts, epochs, work done, elapsed and ETA."""
        elapsed = self._clock() - self._t0 if self._t0 is not None else 0.0
        done = (self.trained + self.skipped) / self.total_work * 100 if self.total_work else 100.0
        return (f"{self._describe()}; {self.epochs_done}/{self.n_trials * self.epochs} epochs, {done:.0f} % of the "
                f"work; {_clock_text(elapsed)} elapsed, {_eta_text(self.eta())}")

    # Tune pickles its run config (callbacks included) into the experiment folder; the live
    # display holds locks and a console, so it stays behind.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_progress", "_clock", "_plain")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._progress, self._clock, self._plain = None, time.monotonic, None

    def already_done(self, n: int) -> None:
        """``n`` trials finished before this driver started (a restored Tune experiment)."""
        self.done += n
        self._add(skipped=n * (self.epochs * self._mean_cost + self.trial_cost), epochs=n * self.epochs)

    def start(self) -> None:
        self._progress.start()

    def stop(self) -> None:
        self._progress.stop()

    # -- Ray Tune callback hooks ---------------------------------------------------------
    @staticmethod
    def _plan(trial) -> dict:
        return (getattr(trial, "config", None) or {}).get("plan") or {}

    def _seeds(self, trial) -> int:
        return len(self._plan(trial).get("members", ())) or 1

    def _seed_cost(self, trial) -> float:
        """One epoch of one of the trial's seeds (a pack's members: their mean)."""
        plan = self._plan(trial)
        names = [m.get("name") for m in plan.get("members", ())] or [plan.get("name")]
        return sum(self.costs.get(n, self._mean_cost) for n in names) / len(names)

    def _training(self, trial) -> int:
        """The trial's seeds that train (not reused)."""
        return self._seeds(trial) - self._reused.get(trial.trial_id, 0)

    def on_trial_start(self, iteration, trials, trial, **info):
        if self._t0 is None:
            self._t0 = self._clock()
        self.running[trial.trial_id] = self._seeds(trial)
        self._update()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        tid = trial.trial_id
        epoch = int(result.get("epoch", 0))
        seen = self._epoch_seen.get(tid)
        w, seeds = self._seed_cost(trial), self._seeds(trial)
        skipped = 0.0
        if result.get("reused") and tid not in self._reused:
            # every report of a trial says how many of its seeds were reused: their work is not trained
            self._reused[tid] = min(int(result["reused"]), seeds)
            skipped += self._reused[tid] * self.epochs * w
        if seen is None:  # this driver's first report: epochs before it came from a checkpoint
            self._epoch_seen[tid] = seen = max(0, epoch - 1)
            skipped += seen * self._training(trial) * w
            self._add(skipped=skipped, epochs=seen * seeds)
            skipped = 0.0
        if epoch > seen:
            self._epoch_seen[tid] = epoch
            self._add(trained=(epoch - seen) * self._training(trial) * w, skipped=skipped,
                      epochs=(epoch - seen) * seeds)
        elif skipped:
            self._add(skipped=skipped)

    def _close(self, trial) -> None:
        """A trial ended: its remaining epochs count as done for the bar and the ETA."""
        self.running.pop(trial.trial_id, None)
        seen = self._epoch_seen.get(trial.trial_id, 0)
        self._epoch_seen[trial.trial_id] = self.epochs
        left = max(0, self.epochs - seen)
        trained = self._training(trial) > 0
        self._add(trained=self.trial_cost if trained else 0.0,
                  skipped=left * self._training(trial) * self._seed_cost(trial) + (0.0 if trained else self.trial_cost),
                  epochs=left * self._seeds(trial))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += self._seeds(trial)
        self._close(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.failed += self._training(trial)  # reused members did not fail
        self._close(trial)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._update()
