"""Live progress of a sweep in the driver: trials done / running / failed, epochs, ETA."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from ray.tune import Callback


class SweepProgress(Callback):
    """A Ray Tune callback drawing a rich progress bar over all epochs of all trials."""

    def __init__(self, n_trials: int, epochs: int, console: Console | None = None, enabled: bool = True,
                 packs: int = 0):
        """``n_trials``: seeds to train (a pack of K counts K); ``packs``: the Tune trials they
        are packed into (0: not packed)."""
        self.n_trials, self.epochs, self.packs = n_trials, epochs, packs
        self.done = self.failed = 0
        self.running: dict[str, int] = {}  # trial id -> its seeds
        self._reused: dict[str, int] = {}
        self._epoch_seen: dict[str, int] = {}
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("epochs"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, disable=not enabled, transient=False,
        )
        self._task = self._progress.add_task(self._describe(), total=n_trials * epochs)

    @property
    def reused(self) -> int:
        return sum(self._reused.values())

    def _describe(self) -> str:
        reused = f", {self.reused} reused" if self.reused else ""
        packs = f" in {len(self.running)} pack{'s' if len(self.running) != 1 else ''}" if self.packs else ""
        return (f"trials {self.done}/{self.n_trials} done, {sum(self.running.values())} running{packs}, "
                f"{self.failed} failed{reused}")

    def _update(self, advance: int = 0) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=advance, description=self._describe())

    # Tune pickles its run config (callbacks included) into the experiment folder; the live
    # display holds locks and a console, so it stays behind.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_progress"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._progress = None

    def already_done(self, n: int) -> None:
        """``n`` trials finished before this driver started (a restored Tune experiment)."""
        self.done += n
        self._update(advance=n * self.epochs)

    def start(self) -> None:
        self._progress.start()

    def stop(self) -> None:
        self._progress.stop()

    # -- Ray Tune callback hooks ---------------------------------------------------------
    @staticmethod
    def _seeds(trial) -> int:
        plan = (getattr(trial, "config", None) or {}).get("plan") or {}
        return len(plan.get("members", ())) or 1

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running[trial.trial_id] = self._seeds(trial)
        self._update()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        epoch = int(result.get("epoch", 0))
        seen = self._epoch_seen.get(trial.trial_id, 0)
        if result.get("reused"):  # every report of a trial says how many of its seeds were reused
            self._reused[trial.trial_id] = int(result["reused"])
        if epoch > seen:
            self._epoch_seen[trial.trial_id] = epoch
            self._update(advance=(epoch - seen) * self._seeds(trial))

    def _close(self, trial) -> None:
        """A trial ended: its remaining epochs count as done for the bar and the ETA."""
        self.running.pop(trial.trial_id, None)
        seen = self._epoch_seen.get(trial.trial_id, 0)
        self._epoch_seen[trial.trial_id] = self.epochs
        self._update(advance=(self.epochs - seen) * self._seeds(trial))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += self._seeds(trial)
        self._close(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.failed += self._seeds(trial) - self._reused.get(trial.trial_id, 0)  # reused members did not fail
        self._close(trial)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._update()
