"""What ``orch resume NAME`` needs to run a command again: one JSON file per experiment
name in the workdir, ``WORKDIR/resume/NAME.json``, written when a training command starts.

It holds the experiment (its YAML, the store path made absolute), the command line, the
Ray address, the tracking URI, the Tune storage, ``--reuse-across-versions`` and the code
digest the command started with, and whether the command got to its end. ``orch resume``
runs the experiment again with these settings (each can be overridden); every sweep of it
then finds its own interrupted Tune experiment by its stable name and restores it
(``runner.run_sweep``, ``tune_restore``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import yaml

from orchestrator.experiment import Experiment
from orchestrator.workdir import Workdir


class ResumeIndexError(ValueError):
    """No usable index for the name asked for; the message says what there is."""


@dataclass(frozen=True)
class Entry:
    name: str
    experiment: Experiment
    command: list[str]
    address: str | None
    tracking_uri: str
    storage: str
    reuse_across_versions: bool
    code_digest: str
    started: float
    finished: float | None  # when the command got to its end (None: it did not, e.g. its driver died)


class DriverBusy(RuntimeError):
    """Another live driver runs the experiment of this name in this workdir."""


@contextlib.contextmanager
def driver_lock(wd: Workdir, name: str) -> Iterator[None]:
    """Held by the driver running experiment ``name`` for its whole life (an ``flock`` on
    ``WORKDIR/resume/NAME.lock``: a killed driver's goes with it), so that a second driver —
    ``orch resume NAME`` or the same command while the first still runs — does not restore
    the same Tune experiment twice (two trials per key writing one MLflow run)."""
    p = wd.root / "resume" / f"{name}.lock"
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise DriverBusy(f"experiment {name!r} is being run by another driver ({f.read().strip() or 'pid ?'}) "
                             f"in {wd.root}: wait for it to end (or stop it) before running or resuming it again, "
                             f"or give this one another --experiment name") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def replaces_unfinished(wd: Workdir, exp: Experiment) -> str | None:
    """If the last command of ``exp.name`` did not finish and was another experiment, what
    it was (this command's entry replaces it: ``orch resume NAME`` then runs this one)."""
    p = path_of(wd, exp.name)
    if not p.exists():
        return None
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if d.get("finished") is None and d.get("experiment_yaml") != exp.to_yaml():
        return " ".join(d.get("command") or []) or "?"
    return None


def path_of(wd: Workdir, name: str) -> Path:
    return wd.root / "resume" / f"{name}.json"


def record(wd: Workdir, exp: Experiment, address: str | None, storage: str, reuse_across_versions: bool,
           code_digest: str, command: list[str] | None = None) -> Path:
    """Write (or replace) the entry of ``exp.name`` (``command``: the command line, by
    default this process's); returns its path."""
    if exp.store and "://" not in exp.store:
        exp = exp.with_store(str(Path(exp.store).expanduser().resolve()))
    entry = {"name": exp.name, "experiment_yaml": exp.to_yaml(), "command": list(command if command is not None else ["orch", *sys.argv[1:]]),
             "address": address or os.environ.get("RAY_ADDRESS") or None, "tracking_uri": wd.tracking_uri,
             "storage": storage, "reuse_across_versions": reuse_across_versions, "code_digest": code_digest,
             "started": time.time(), "finished": None}
    p = path_of(wd, exp.name)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry, indent=1))
    tmp.replace(p)
    return p


def mark_finished(wd: Workdir, name: str) -> None:
    p = path_of(wd, name)
    if p.exists():
        entry = json.loads(p.read_text())
        entry["finished"] = time.time()
        p.write_text(json.dumps(entry, indent=1))


def load(wd: Workdir, name: str) -> Entry:
    p = path_of(wd, name)
    if not p.exists():
        known = sorted(x.stem for x in (wd.root / "resume").glob("*.json"))
        raise ResumeIndexError(f"{p}: no experiment {name!r} was started in workdir {wd.root}"
                          + (f"; known: {', '.join(known)}" if known else " (none was)"))
    try:
        d = json.loads(p.read_text())
        exp = Experiment.from_dict(yaml.safe_load(d["experiment_yaml"]))
        return Entry(d["name"], exp, list(d.get("command") or []), d.get("address"), d["tracking_uri"],
                     d.get("storage", ""), bool(d.get("reuse_across_versions")), d.get("code_digest", ""),
                     float(d.get("started", 0)), d.get("finished"))
    except (ValueError, KeyError, TypeError) as e:
        raise ResumeIndexError(f"{p}: not a readable resume entry ({e})") from None
