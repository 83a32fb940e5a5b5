"""An experiment from start to report: its store (the built-in benchmark when it names
none), its trials (its protocol's ``plan``: ``orchestrator.protocols``), the Tune run
(``runner.run_sweep``), and the protocol's ``report`` of the runs, written to the workdir and
logged on the sweep's parent run — or, for a dry run, the trial list and the resource plan
and nothing else. What every ``orch`` command that trains goes through."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import ray
import torch
from rich.columns import Columns
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from orchestrator import packing, protocols, reports, seed_packs
from orchestrator.experiment import Experiment
from orchestrator.protocols import ProtocolError, TrialPlan
from orchestrator.reports.context import PlannedTrial, ReportContext
from orchestrator.reports.runs import ConfusionReader, TrialResult, classes_of, sweep_results
from orchestrator.search_space import is_random
from orchestrator.runner import ResourceError, Search, SweepOutcome, grid_size, init_ray, run_sweep
from orchestrator.store_uri import open_remote, publish_benchmark
from orchestrator.sweep_run import DeletedExperiment
from orchestrator.tune_restore import RestoreError
from orchestrator.tune_storage import StorageError
from orchestrator.workdir import Workdir
from storage.location import is_remote, local_path
from storage.sampling import parse_length
from storage.selection import label_map
from storage.sources.synthetic import benchmark_spec, cached_store_path, ensure_store
from storage.store import FrameStore, StoreError
from trainables.config import TrialConfig
from trainables.data import fit_to_store, refused_clips
from trainables.model import ModelConfig


class CommandError(Exception):
    """Something the user asked for cannot be done; the message names what and why."""


def builtin_store(wd: Workdir, console: Console, name: str = "default") -> Path:
    """The built-in benchmark ``name``'s store, built once into the workdir (with progress)."""
    spec = benchmark_spec(name)
    cached = cached_store_path(spec, wd.stores)
    if cached.exists():
        try:
            FrameStore(cached)
        except StoreError as e:
            raise CommandError(f"{e}; remove it to have it built again") from None
        console.print(f"benchmark store ({name}): {cached} (cached)")
        return cached
    with Progress(TextColumn(f"building the built-in synthetic benchmark {name!r}"), BarColumn(),
                  MofNCompleteColumn(), TextColumn("clips"), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("", total=spec.n_clips)
        path, built = ensure_store(spec, wd.stores, progress=lambda i, n: bar.update(task, completed=i))
    console.print(f"benchmark store ({name}): {path} ({'built' if built else 'cached'})")
    return path


def open_store(exp: Experiment, wd: Workdir, console: Console, dry_run: bool) -> tuple[Experiment, FrameStore | None]:
    """The experiment's store, opened and checked against its token and label map; the
    experiment comes back with the store's absolute path (or its URI) in its trial config (and as its
    ``store`` unless it is the built-in benchmark, which it keeps naming by ``benchmark``). The
    built-in benchmark, when Tune's storage is remote (``--storage s3://…``: a cluster whose
    nodes share no disk), is published under ``STORAGE/stores/`` and its trials fetch it. ``None`` for a dry run whose
    built-in benchmark is not built yet (a dry run builds nothing)."""
    if not exp.store:
        if dry_run and not cached_store_path(benchmark_spec(exp.benchmark), wd.stores).exists():
            return exp, None
        path = builtin_store(wd, console, exp.benchmark)
        if is_remote(wd.storage) and not dry_run:  # nodes that share no disk: they fetch a published copy
            uri = publish_benchmark(path, wd.storage.split("?", 1)[0].rstrip("/") + "/stores", console)
            fs = FrameStore(path)
            exp = dataclasses.replace(exp, trial=dataclasses.replace(
                exp.trial, data=dataclasses.replace(exp.trial.data, store=uri)))
            model = fit_to_store(exp.trial.model, fs, [parse_length(n) for n in exp.lengths])
            return dataclasses.replace(exp, trial=dataclasses.replace(exp.trial, model=model)), fs
    elif is_remote(exp.store):  # fetched into this machine's cache; the trials fetch it on their nodes
        try:
            fs = open_remote(exp.store, console)
        except StoreError as e:
            raise CommandError(str(e)) from None
        model = fit_to_store(exp.trial.model, fs, [parse_length(n) for n in exp.lengths])
        exp = exp.with_store(exp.store)  # the URI, not the local copy, goes to the trials
        return dataclasses.replace(exp, trial=dataclasses.replace(exp.trial, model=model)), fs
    else:
        try:
            path = local_path(exp.store)
        except ValueError as e:
            raise CommandError(str(e)) from None
    try:
        fs = FrameStore(path)
    except StoreError as e:
        raise CommandError(str(e)) from None
    resolved = str(Path(path).resolve())
    if exp.store:
        exp = exp.with_store(resolved)
    else:  # the built-in benchmark: the experiment keeps naming it (its YAML and params say which)
        exp = dataclasses.replace(exp, trial=dataclasses.replace(
            exp.trial, data=dataclasses.replace(exp.trial.data, store=resolved)))
    model = fit_to_store(exp.trial.model, fs, [parse_length(n) for n in exp.lengths])  # max_frames 0: from the store
    return dataclasses.replace(exp, trial=dataclasses.replace(exp.trial, model=model)), fs


def plans_of(exp: Experiment, fs: FrameStore) -> list[TrialPlan]:
    """The experiment's trials on ``fs``; the store is checked for what they need (the
    protocol's splits and subjects, labels the label map knows, the token's features)."""
    try:
        plans = protocols.get(exp.protocol.kind).plan(exp, fs)
    except (ProtocolError, ValueError) as e:
        raise CommandError(str(e)) from None
    if exp.trial.data.token == "flow_roi" and "flow_roi" not in fs.feature_shapes:
        raise CommandError(f"{fs.path}: no flow features for token flow_roi (ingest computes them unless "
                           f"--features none; or use --token pixel_diff)")
    check_lengths(exp, plans, fs)
    return plans


def check_lengths(exp: Experiment, plans: list[TrialPlan], fs: FrameStore) -> None:
    """Every clip a trial would load fits its model's positions; else the clips are named,
    before anything starts."""
    classes = label_map(exp.trial.data.label_map, fs).class_indices(fs)
    groups: dict[tuple[str, ModelConfig], list[np.ndarray]] = {}
    for p in plans:
        model = TrialConfig.from_dict(p.trial).model if p.trial else exp.trial.model
        roles = (p.roles.train, p.roles.validation, *p.roles.tests.values())
        groups.setdefault((p.length, model), []).extend(s.rows(fs, classes) for s in roles)
    lines = []
    for (n, model), rows in groups.items():
        bad = refused_clips(fs, np.unique(np.concatenate(rows)), parse_length(n), model)
        if bad:
            what = (f"N={n} frames is more than model.max_frames={model.max_frames}, so no clip fits"
                    if n != "all" and int(n) > model.max_frames
                    else f"{len(bad)} clip(s) longer than model.max_frames={model.max_frames}")
            lines.append(f"length {n}: {what}: "
                         + ", ".join(bad[:10]) + (f", ... ({len(bad) - 10} more)" if len(bad) > 10 else ""))
    if lines:
        raise CommandError("the model's learned positions cannot take every clip the trials would load:\n  "
                           + "\n  ".join(lines) + f"\nthe store's longest clip has "
                           f"{int(fs.column('frame_count').max())} frames; set model.max_frames to 0 (the store's "
                           f"longest) or at least that (and at least the largest N), or model.positions to normalized_time "
                           f"(any length) — in the experiment's YAML (`--save-yaml`, edit, `orch run`) or "
                           f"with --positions normalized_time")


def print_plan(console: Console, exp: Experiment, fs: FrameStore | None, plans: list[TrialPlan] | None,
               address: str | None, n_trials: int | None = None, what: str = "") -> None:
    """What a command would run: its trials and the resources they need."""
    d, r = exp.trial.data, exp.resources
    where = (f"{exp.store or fs.path} ({fs.fingerprint[:12]}, {len(fs)} clips)" if fs is not None
             else f"the built-in benchmark {exp.benchmark!r} (not built yet: the first real run builds it: about a "
                  f"minute for the default, 8 for dfme-size)")
    console.print(f"dry run of experiment {exp.name!r} (protocol {exp.protocol.kind}): nothing is trained or logged")
    console.print(f"store: {where}")
    console.print(f"splits: {exp.protocol.roles_text()}; labels: {d.label_map}; token {d.token}; "
                  f"{exp.trial.train.epochs} epochs")
    m = exp.trial.model
    upto = f"up to {m.max_frames} frames" if m.max_frames else "the store's longest clip"  # 0 until it is opened
    longest = f" (the store's longest clip: {int(fs.column('frame_count').max())} frames)" if fs is not None else ""
    console.print("model: " + (f"{m.time_points} positions by normalised time over each clip"
                               if m.positions != "learned" else f"learned positions for {upto}") + longest)
    protocol = protocols.get(exp.protocol.kind)
    names = protocol.names_without_store(exp) if plans is None else [p.name for p in plans]
    n_trials = n_trials if n_trials is not None else len(names)
    console.print(Columns(names, equal=True))
    console.print(what or protocol.count_text(exp, plans, n_trials))
    need = f"{r.cpus_per_trial:g} CPU" + (f" + {r.gpus_per_trial:g} GPU" if r.gpus_per_trial else "")
    nodes = nodes_of(address)
    where = (f"the cluster at {address} now has {len(nodes)} node{'s' if len(nodes) != 1 else ''}" if address
             else "local Ray")
    n_tune = n_trials
    if plans is not None and exp.search is None:
        packs = packs_of(exp, plans, fs, nodes)
        if len(packs) < len(plans):
            n_tune = len(packs)
            sizes = sorted({len(g) for g in packs})
            sizes = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
            console.print(f"packed seeds (--pack-seeds {r.pack_seeds}): {len(plans)} trials in {n_tune} Ray Tune "
                          f"trials of {sizes} seeds, each pack trained "
                          f"as one model; every seed keeps its own MLflow run"
                          + (" (auto: sized by each trial's tokens, costliest first)" if r.pack_seeds == seed_packs.AUTO
                             else "") + ":")
            console.print(Columns([f"{seed_packs.pack_name(g)} ({len(g)})" for g in packs], equal=True))
    console.print(f"each {'Tune trial' if n_tune != n_trials else 'trial'} needs {need} (torch threads: "
                  f"{r.threads}); {where}:")
    for line in packing.plan_lines(nodes, r.cpus_per_trial, r.gpus_per_trial, n_tune):
        console.print(line)
    if address:
        console.print("  (an autoscaling cluster adds nodes when trials wait)")


def nodes_of(address: str | None) -> list[packing.Node]:
    """The nodes trials can run on: the cluster's (connecting only to read them), or this machine."""
    if not address:
        return [packing.Node("this machine", float(os.cpu_count() or 1), float(torch.cuda.device_count()))]
    started = init_ray(address, None)
    try:
        return packing.cluster_nodes()
    finally:
        if started:
            ray.shutdown()


def packs_of(exp: Experiment, plans: list[TrialPlan], fs: FrameStore, nodes: list[packing.Node] | None = None,
             address: str | None = None) -> list[list[TrialPlan]]:
    """The Tune trials' plans (``resources.pack_seeds``): one each (1); packs of K seeds;
    ``auto``: packs sized by each trial's cost for the worker slots of ``nodes``
    (``seed_packs.balanced``). Dropout: refused for K, solo for ``auto``."""
    setting = exp.resources.pack_seeds
    if setting == 1:
        return seed_packs.pack(plans, 1)
    if not any(packable(exp, p) for p in plans):  # all with dropout (a nested search's choices may differ per fold)
        if setting == seed_packs.AUTO:
            return seed_packs.pack(plans, 1)
        dropout = sorted({dropout_of(exp, p) for p in plans})
        raise CommandError(f"--pack-seeds {setting}: model.dropout is {', '.join(f'{d:g}' for d in dropout)}; packed "
                           f"seeds need dropout 0 (each member's dropout masks would have to follow its solo random "
                           f"stream)")
    if setting != seed_packs.AUTO:
        return seed_packs.pack(plans, int(setting), lambda p: packable(exp, p))
    r = exp.resources
    nodes = nodes if nodes is not None else nodes_of(address)
    slots = sum(packing.trials_at_once(n, r.cpus_per_trial, r.gpus_per_trial) for n in nodes)
    return seed_packs.balanced(plans, slots, training_seconds(exp, fs), lambda p: packable(exp, p))


def training_seconds(exp: Experiment, fs: FrameStore):
    """``seconds(members)``: a pack's (one plan: a solo trial's) estimated training time on
    one CPU thread (``seed_packs.pack_seconds``, from the frame counts of its clips)."""
    classes = label_map(exp.trial.data.label_map, fs).class_indices(fs)
    counts, chosen = fs.column("frame_count"), {}

    def frames(plan: TrialPlan):  # its train and validation clips' frame counts
        roles = (plan.roles.train, plan.roles.validation)
        key = json.dumps([r.to_dict() for r in roles], sort_keys=True, default=str)
        if key not in chosen:
            chosen[key] = tuple(counts[r.rows(fs, classes)] for r in roles)
        return chosen[key]

    def seconds(members: list[TrialPlan]) -> float:
        train = train_of(exp, members[0])
        return seed_packs.pack_seconds(members, frames, train.epochs, train.batch_size)

    return seconds


def train_of(exp: Experiment, plan: TrialPlan):
    """The training settings a plan trains with: its own config's (a nested search's choice)
    or the experiment's."""
    return TrialConfig.from_dict(plan.trial).train if plan.trial else exp.trial.train


def epoch_costs(exp: Experiment, plans: list[TrialPlan], fs: FrameStore) -> dict[str, float]:
    """Each plan's estimated cost of one epoch (seconds on one CPU thread), by name: what
    the live progress weighs an epoch by (``progress.SweepProgress``)."""
    seconds = training_seconds(exp, fs)
    return {p.name: seconds([p]) / max(1, train_of(exp, p).epochs) for p in plans}


def packable(exp: Experiment, plan: TrialPlan) -> bool:
    """Whether a plan's seeds may train as one model: its config (its own, a nested search's
    choice per fold, or the experiment's) has no dropout."""
    return not dropout_of(exp, plan)


def dropout_of(exp: Experiment, plan: TrialPlan) -> float:
    """The dropout a plan trains with: its own config's, else the experiment's."""
    model = plan.trial.get("model", {}) if plan.trial is not None else None
    return float(model.get("dropout", 0.0) if model is not None else exp.trial.model.dropout)


def sweep(exp: Experiment, plans: list[TrialPlan], fs: FrameStore, wd: Workdir, console: Console,
          address: str | None, show_progress: bool, search: Search | None = None,
          reuse_across_versions: bool = False) -> SweepOutcome:
    try:
        packs = None if search is not None else packs_of(exp, plans, fs, address=address)
        costs = epoch_costs(exp, plans, fs) if show_progress and search is None else None
        return run_sweep(exp, plans, fs.fingerprint, wd, address=address, console=console,
                         show_progress=show_progress, search=search, reuse_across_versions=reuse_across_versions,
                         packs=packs, epoch_costs=costs)
    except (ResourceError, StorageError, RestoreError, DeletedExperiment) as e:
        raise CommandError(str(e)) from None


def execute(exp: Experiment, wd: Workdir, console: Console, address: str | None = None,
            show_progress: bool = True, dry_run: bool = False, reuse_across_versions: bool = False) -> int:
    """Run ``exp`` (or print its plan) — its search first, if it has one; returns the exit
    status (1 if a trial failed). FINISHED runs are reused only if the code running now made
    them, or with ``reuse_across_versions`` whatever code made them."""
    if exp.search is not None:
        return search_then_run(exp, wd, console, address, show_progress, dry_run, reuse_across_versions)
    exp, fs = open_store(exp, wd, console, dry_run)
    plans = plans_of(exp, fs) if fs is not None else None
    if dry_run:
        if plans is None and protocols.get(exp.protocol.kind).names_without_store(exp) is None:
            console.print("the built-in benchmark is not built yet: its subjects decide the trials; "
                          "a real run builds it (about a minute for the default, 8 for dfme-size)")
            return 0
        print_plan(console, exp, fs, plans, address)
        return 0
    return _run_plans(exp, plans, fs, wd, console, address, show_progress, reuse_across_versions)


def _run_plans(exp: Experiment, plans: list[TrialPlan], fs: FrameStore, wd: Workdir, console: Console,
               address: str | None, show_progress: bool, reuse_across_versions: bool = False) -> int:
    console.print(f"experiment {exp.name!r} ({exp.protocol.kind}): {len(plans)} trials, "
                  f"{exp.trial.train.epochs} epochs each; store {fs.fingerprint[:12]} ({len(fs)} clips)")
    console.print(f"splits: {exp.protocol.roles_text()}")
    t0 = time.time()
    outcome = sweep(exp, plans, fs, wd, console, address, show_progress, reuse_across_versions=reuse_across_versions)
    results, unfinished = sweep_results(wd.tracking_uri, outcome.experiment_id, outcome.sweep_key,
                                        [p.name for p in plans], outcome.code["digest"], reuse_across_versions)
    rep = write_reports(exp, plans, results, unfinished, wd, console)
    if outcome.parent_run_id:  # the sweep's parent run (orch.run_kind=sweep) holds them too
        reports.log_on_parent(wd.tracking_uri, outcome.parent_run_id, rep)
    console.print(f"{len(results)} finished runs of {len(plans)} trials; {outcome.n_errored} failed "
                  f"after retries; {time.time() - t0:.0f} s")
    console.print(code_summary(outcome))
    for line in outcome.errors:
        console.print(f"[red]failed trial[/] {line} (full traceback: the run's orch.error tag in MLflow)")
    console.print(f"browse the runs: [bold]{escape(mlflow_ui_command(wd))}[/]")
    console.print(f"workdir: [bold]{escape(str(wd.root))}[/]")
    return 1 if outcome.n_errored else 0




def code_summary(outcome: SweepOutcome) -> str:
    """How many trials trained and how many reused a FINISHED run, and with which code."""
    c = outcome.code or {}
    other = (f" ({outcome.n_reused_other_code} made by other code: --reuse-across-versions)"
             if outcome.n_reused_other_code else "")
    return (f"{outcome.n_trained} trained, {outcome.n_reused} reused{other}; code {c.get('digest', '?')} "
            f"(orch {c.get('version', '?')}, git {c.get('git_commit', '?')[:12]}"
            f"{' dirty' if c.get('git_dirty') == 'true' else ''})")


def write_reports(exp: Experiment, plans: list[TrialPlan], results: list[TrialResult], unfinished: dict[str, str],
                  wd: Workdir, console: Console) -> reports.Report:
    """The protocol's report of the sweep's runs (the same object ``orch table`` rebuilds
    from MLflow), printed and written to ``reports/NAME/``."""
    context = ReportContext(exp, [PlannedTrial(p.name, p.seed, p.length, p.fold) for p in plans],
                            classes_of(results), unfinished, ConfusionReader(wd.tracking_uri))
    rep = protocols.get(exp.protocol.kind).report(results, context)
    out = wd.reports(exp.name)
    (out / "experiment.yaml").write_text(exp.to_yaml())
    written = [out / "experiment.yaml", *reports.write(rep, out)]
    console.print(Markdown(rep.markdown()))
    for line in rep.commands:
        console.print(line)
    console.print(f"tables: {', '.join(map(str, written))}")
    return rep


def mlflow_ui_command(wd: Workdir) -> str:
    """How to browse these runs: the tracking server's address when they went to one;
    else ``orch ui`` on the workdir's store (or on the store the URI names) — the orch of
    this environment, so it works without activating the virtual environment."""
    uri = wd.tracking_uri
    if uri.startswith(("http://", "https://")):
        return f"open {uri} (the tracking server's UI)"
    exe = Path(sys.executable).parent / "orch"
    orch = str(exe) if exe.exists() else "orch"
    where = f"--workdir '{wd.root}'" if uri == wd.local_tracking_uri else f"--backend-store-uri '{uri}'"
    return f"{orch} ui {where} (it prints the address of each experiment's runs)"


def search_then_run(exp: Experiment, wd: Workdir, console: Console, address: str | None, show_progress: bool,
                    dry_run: bool, reuse_across_versions: bool = False) -> int:
    """The experiment's search (``exp.search``) on the protocol's train / validation data
    only — no test set is loaded, so the searcher cannot see one — then the chosen
    configuration run over the experiment's seeds as the protocol, and reported like it.

    ``split``: one search, one best configuration (``best.yaml``). ``loso``: nested — each
    fold is searched on its own training and validation subjects, and each fold's runs use
    that fold's best configuration (``best_per_fold.csv``)."""
    space, samples = exp.search.domains(), exp.search.samples
    exp, fs = open_store(exp, wd, console, dry_run)
    if fs is None:
        console.print("the built-in benchmark is not built yet: a real run builds it (about a minute for the default, 8 for dfme-size)")
        return 0
    final = plans_of(exp, fs)
    try:
        search = Search(space, samples, exp.trial.train.epochs, seed=exp.seeds[0], grace_period=exp.grace_period)
        splans = protocols.get(exp.protocol.kind).search_plans(exp, fs)
    except (ProtocolError, ValueError) as e:
        raise CommandError(str(e)) from None
    if samples > 1 and not is_random(space):
        raise CommandError(f"search.samples {samples}: the space has no random domain, so every sample of a grid point "
                           f"would train the same configuration on the same data; use 1 sample")
    per = samples * grid_size(space)
    where = (f"train {splans[0].roles.train.describe()}, validation {splans[0].roles.validation.describe()}"
             if len(splans) == 1 else f"{len(splans)} folds searched apart (nested), each on its own training "
                                       f"and validation subjects")
    if dry_run:
        print_plan(console, exp, fs, splans, address, n_trials=per * len(splans),
                   what=f"{per * len(splans)} search trials ({samples} samples x {grid_size(space)} grid points"
                        + (f" x {len(splans)} folds" if len(splans) > 1 else "")
                        + f"; {where}; no test set), then {len(final)} trials of the best configuration"
                        + ("s" if len(splans) > 1 else "") + f" ({exp.protocol.kind}, {len(exp.seeds)} seeds)")
        return 0
    console.print(f"search: {per} configurations on {where}; ASHA on {search.metric}; no test set is loaded")
    started = init_ray(address, wd)  # one Ray for every search and the final run
    try:
        chosen: dict[str, tuple[TrialConfig, float]] = {}
        for k, splan in enumerate(splans, 1):
            if len(splans) > 1:
                console.print(f"fold {k}/{len(splans)}: held-out subject {splan.fold}")
            outcome = sweep(exp, [splan], fs, wd, console, address, show_progress, search=search,
                            reuse_across_versions=reuse_across_versions)
            console.print(f"search: {code_summary(outcome)}")
            for line in outcome.errors:
                console.print(f"[red]failed search trial[/] {line} (full traceback: the run's orch.error tag in MLflow)")
            if outcome.best is None:
                raise CommandError(f"search{' of fold ' + splan.fold if splan.fold else ''}: no configuration "
                                   f"finished an epoch")
            found = TrialConfig.from_dict(outcome.best[0])
            chosen[splan.fold] = (dataclasses.replace(found, seed=0, data=dataclasses.replace(
                found.data, length=None, store=exp.store)), outcome.best[1])
        out = wd.reports(exp.name)
        if len(splans) == 1:
            trial, best_val = chosen[""]
            best = dataclasses.replace(exp, name=f"{exp.name}-best", search=None, trial=trial)
            console.print(f"best configuration (validation UF1 {best_val * 100:.2f} %): "
                          + ", ".join(f"{k}={_get(trial, k)}" for k in space))
            (out / "best.yaml").write_text(best.to_yaml())
            console.print(escape(f"best experiment: {out / 'best.yaml'} (re-run it with: orch run {out / 'best.yaml'})"))
            return execute(best, wd, console, address, show_progress, reuse_across_versions=reuse_across_versions)
        with open(out / "best_per_fold.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["held_out_subject", "best_val_uf1", *space])
            for fold, (trial, best_val) in chosen.items():
                w.writerow([fold, best_val, *(_get(trial, k) for k in space)])
        console.print(f"each fold's configuration: {out / 'best_per_fold.csv'}")
        nested = dataclasses.replace(exp, name=f"{exp.name}-best", search=None)
        plans = [dataclasses.replace(p, trial=chosen[p.fold][0].to_dict()) for p in final]
        return _run_plans(nested, plans, fs, wd, console, address, show_progress, reuse_across_versions)
    finally:
        if started:
            ray.shutdown()


def _get(trial, path: str):
    section, key = path.split(".", 1)
    return getattr(getattr(trial, section), key)
