"""Live progress of a sweep in the driver: trials done / running / failed, epochs, ETA."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from ray.tune import Callback


class SweepProgress(Callback):
    """A Ray Tune callback drawing a rich progress bar over all epochs of all trials."""

    def __init__(self, n_trials: int, epochs: int, console: Console | None = None, enabled: bool = True):
        self.n_trials, self.epochs = n_trials, epochs
        self.done = self.failed = self.reused = 0
        self.running: set[str] = set()
        self._epoch_seen: dict[str, int] = {}
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("epochs"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, disable=not enabled, transient=False,
        )
        self._task = self._progress.add_task(self._describe(), total=n_trials * epochs)

    def _describe(self) -> str:
        reused = f", {self.reused} reused" if self.reused else ""
        return (f"trials {self.done}/{self.n_trials} done, {len(self.running)} running, "
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
    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)
        self._update()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        epoch = int(result.get("epoch", 0))
        seen = self._epoch_seen.get(trial.trial_id, 0)
        if result.get("reused"):
            self.reused += 1
        if epoch > seen:
            self._epoch_seen[trial.trial_id] = epoch
            self._update(advance=epoch - seen)

    def _close(self, trial) -> None:
        """A trial ended: its remaining epochs count as done for the bar and the ETA."""
        self.running.discard(trial.trial_id)
        seen = self._epoch_seen.get(trial.trial_id, 0)
        self._epoch_seen[trial.trial_id] = self.epochs
        self._update(advance=self.epochs - seen)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        self._close(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.failed += 1
        self._close(trial)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._update()
