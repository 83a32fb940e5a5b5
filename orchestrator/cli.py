"""The ``orch`` command line. Thin: parses options, builds the experiment, calls the runner
and the report."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.columns import Columns
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from orchestrator import report
from orchestrator.experiment import DEFAULT_LENGTHS, AblationExperiment, Resources
from orchestrator.runner import ResourceError, run_sweep
from orchestrator.store_cli import store_app
from orchestrator.workdir import ENV_VAR, Workdir
from storage.sources.synthetic import SyntheticSpec, cached_store_path, ensure_store
from storage.store import FrameStore, StoreError
from trainables.config import DataConfig, TrainConfig, TrialConfig

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="orch: orchestrated micro-expression recognition experiments (Ray Tune + MLflow).")
console = Console()
app.add_typer(store_app, name="store", help="Look into a frame store: info, verify.")


@app.callback()
def _group() -> None:
    """orch: orchestrated micro-expression recognition experiments (Ray Tune + MLflow)."""


def _fail(msg: str) -> None:
    console.print(f"[bold red]error:[/] {msg}")
    raise typer.Exit(2)


def _builtin_store(workdir: Workdir) -> Path:
    spec = SyntheticSpec()
    cached = cached_store_path(spec, workdir.stores)
    if cached.exists():
        try:
            FrameStore(cached)
            console.print(f"benchmark store: {cached} (cached)")
            return cached
        except StoreError as e:
            _fail(f"{e}; remove it to have it built again")
    with Progress(TextColumn("building the built-in synthetic benchmark"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("clips"), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("", total=spec.n_clips)
        path, built = ensure_store(spec, workdir.stores, progress=lambda i, n: bar.update(task, completed=i))
    console.print(f"benchmark store: {path} ({'built' if built else 'cached'})")
    return path


@app.command()
def ablation(
    seeds: int = typer.Option(30, help="Number of random seeds (0 .. seeds-1)."),
    lengths: str = typer.Option(",".join(DEFAULT_LENGTHS), help="Frames per clip, comma-separated: integers or 'all'."),
    store: Optional[Path] = typer.Option(None, help="Frame store to use; default: the built-in synthetic benchmark."),
    epochs: int = typer.Option(TrainConfig.epochs, help="Training epochs per trial."),
    token: str = typer.Option(DataConfig.token, help="Per-frame token: flow_roi (optical flow pooled over 18 "
                              "facial regions, computed at ingest; the paper's) or pixel_diff (difference to onset)."),
    experiment: str = typer.Option("ablation", help="Experiment name (MLflow experiment, report folder)."),
    cpus_per_trial: float = typer.Option(1.0, help="CPUs per trial (also its torch threads)."),
    gpus_per_trial: float = typer.Option(0.0, help="GPUs per trial."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address ('auto' or host:port); default: local Ray."),
    workdir: Optional[Path] = typer.Option(None, help=f"Where everything is written (default ${ENV_VAR} or ./orch-work)."),
    progress: bool = typer.Option(True, help="Show the live progress display."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the trials and the resource plan; run nothing."),
):
    """Frame-length ablation: seeds x N frames as one Ray Tune experiment.

    Split roles (the paper's Section 5.1): train on 'train', choose the best epoch on
    'test_A' (validation), report on 'test_B' (test). Prints the Table 4 layout at the end.
    """
    wd = Workdir.resolve(workdir)
    console.print(f"workdir: [bold]{wd.root}[/]")
    try:
        exp = AblationExperiment(
            name=experiment, seeds=tuple(range(seeds)), lengths=tuple(x.strip() for x in lengths.split(",") if x.strip()),
            trial=TrialConfig(data=DataConfig(token=token), train=dataclasses.replace(TrainConfig(), epochs=epochs)),
            resources=Resources(cpus_per_trial, gpus_per_trial),
        )
    except ValueError as e:
        _fail(str(e))
    if dry_run and store is None and not cached_store_path(SyntheticSpec(), wd.stores).exists():
        _print_plan(exp, None, address)  # the benchmark is built by the first real run
        return
    store_path = store if store is not None else _builtin_store(wd)
    try:
        fs = FrameStore(store_path)
    except StoreError as e:
        _fail(str(e))
    for role, split in (("train", exp.trial.data.train_split), ("validation", exp.trial.data.val_split),
                        ("test", exp.trial.data.test_split)):
        if len(fs.indices(split)) == 0:
            _fail(f"{store_path}: no clips in split {split!r}, which the ablation uses as its {role} split "
                  f"(the store has: {', '.join(sorted(set(fs.column('split'))))})")
    if exp.trial.data.token == "flow_roi" and "flow_roi" not in fs.feature_shapes:
        _fail(f"{store_path}: no flow features for --token flow_roi (ingest computes them unless "
              f"--features none; or use --token pixel_diff)")
    exp = exp.with_store(str(Path(store_path).resolve()))
    if dry_run:
        _print_plan(exp, fs, address)
        return
    console.print(f"experiment {exp.name!r}: {len(exp.seeds)} seeds x lengths {','.join(exp.lengths)} = "
                  f"{exp.n_trials} trials, {epochs} epochs each; store {fs.fingerprint[:12]} ({len(fs)} clips)")
    t0 = time.time()
    try:
        outcome = run_sweep(exp, fs.fingerprint, wd, address=address, console=console, show_progress=progress)
    except ResourceError as e:
        _fail(str(e))
    results = report.finished_runs(wd.tracking_uri, outcome.experiment_id, outcome.sweep_key,
                                   seeds=exp.seeds, lengths=exp.lengths)
    rows = report.ablation_table(results)
    title = f"{exp.name}: frame-length ablation ({len(exp.seeds)} seeds, {epochs} epochs)"
    out = wd.reports(exp.name)
    (out / "table4.md").write_text(report.to_markdown(rows, title))
    report.write_csv(rows, out / "table4.csv")
    written = [out / "table4.md", out / "table4.csv"]
    if rows:
        report.plot(rows, out / "table4.png", title)
        written.append(out / "table4.png")
    _print_table(rows, title)
    console.print(f"{len(results)} finished runs of {exp.n_trials} trials; {outcome.n_errored} failed "
                  f"after retries; {time.time() - t0:.0f} s")
    console.print(f"tables: {', '.join(map(str, written))}")
    for line in outcome.errors:
        console.print(f"[red]failed trial[/] {line} (full traceback: the run's orch.error tag in MLflow)")
    console.print(f"browse the runs: [bold]{mlflow_ui_command(wd)}[/] (then open http://127.0.0.1:5000)")
    console.print(f"workdir: [bold]{wd.root}[/]")
    if outcome.n_errored:
        raise typer.Exit(1)


@app.command()
def ingest(
    source: Path = typer.Argument(..., help="Dataset root (dfme, casme3) or the manifest file (manifest)."),
    format: str = typer.Option(..., "--format", help="Layout of SOURCE: dfme (DFME / CCAC2024), casme3 "
                               "(CAS(ME)^3 Part A) or manifest (CSV of videos / frame folders)."),
    out: Path = typer.Option(..., help="Where to write the frame store."),
    size: int = typer.Option(128, help="Frames are cropped and resized to SIZE x SIZE."),
    color: str = typer.Option("gray", help="gray or rgb."),
    crop: str = typer.Option("face", help="face: one face box per clip, found on its onset frame (from the "
                             "68 landmarks with --features flow_roi); none: whole frames resized (data already cropped)."),
    features: str = typer.Option("flow_roi", help="flow_roi: per frame, the optical flow from the onset pooled "
                                 "over 18 facial regions (the paper's input, the default token); none: frames only."),
    workers: Optional[int] = typer.Option(None, help="Parallel decoding processes (default: all cores)."),
    ray_address: Optional[str] = typer.Option(None, "--ray", help="Read clips as Ray tasks on this cluster "
                                              "('auto' or host:port; the data must be at the same path on every node)."),
    strict: bool = typer.Option(False, help="Exit non-zero, after the report, if any clip was skipped."),
    annotations: Optional[list[Path]] = typer.Option(None, help="Annotation sheet(s) (default: found under SOURCE). "
                                                     "dfme: one per split, or with a split column."),
    fps: Optional[float] = typer.Option(None, help="dfme, manifest: frame rate of rows with no fps column."),
    labels: Optional[str] = typer.Option(None, help="manifest: the label vocabulary, comma-separated "
                                         "(default: the labels found, sorted)."),
    damaged: Optional[Path] = typer.Option(None, help="casme3: the damaged-frame list (default: found under SOURCE)."),
    max_clip_frames: int = typer.Option(300, help="casme3: rows longer than this are set aside (a micro-expression is far shorter)."),
    overwrite: bool = typer.Option(False, help="Replace an existing store at OUT."),
):
    """Turn a dataset in its official layout into a frame store, and report every clip that
    could not be used, with its reason (printed, and as JSON beside the store).

    Sources above 100 fps are normalised to 100 fps (only the frames kept are decoded)."""
    from storage import formats
    from storage import ingest as ingest_mod

    try:
        opts = ingest_mod.IngestOptions(size=size, color=color, crop=crop, features=features)
        plan = formats.plan(format, source, annotations=list(annotations or []), damaged=damaged,
                            max_clip_frames=max_clip_frames, fps=fps,
                            labels=[x.strip() for x in labels.split(",")] if labels else None)
    except (ValueError, formats.SourceError) as e:
        _fail(str(e))
    for line in plan.lines:
        console.print(line)
    console.print(f"{len(plan.sources)} clips to read, {len(plan.skipped)} set aside; crop: {crop}; "
                  f"features: {features}")
    mapper, started = None, False
    if ray_address:
        import ray

        from orchestrator.ray_ingest import ray_map
        from orchestrator.runner import init_ray

        started = init_ray(ray_address, None)  # an address: nothing is written locally
        mapper = ray_map()
    try:
        with Progress(TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(), TextColumn("clips"),
                      TimeRemainingColumn(), console=console) as bar:
            task = bar.add_task("", total=len(plan.sources))
            rep = ingest_mod.ingest(plan.sources, out, labels=plan.labels, options=opts, workers=workers,
                                    mapper=mapper, pre_skipped=plan.skipped, overwrite=overwrite,
                                    metadata={"format": format, "source": str(source.resolve())},
                                    progress=lambda i, n: bar.update(task, completed=i))
    except (ValueError, StoreError) as e:
        _fail(str(e))
    finally:
        if started:
            ray.shutdown()
    _print_skips(rep)
    console.print(f"{rep.written} clips written, {len(rep.skipped)} skipped, {rep.frames_read} frames read, "
                  f"{len(rep.notes)} damaged frames replaced, {rep.seconds:.1f} s")
    console.print(f"store: {out}  report: {rep.path}")
    if strict and rep.skipped:
        console.print(f"[red]--strict:[/] {len(rep.skipped)} clips skipped")
        raise typer.Exit(1)


def _print_plan(exp: AblationExperiment, fs: FrameStore | None, address: str | None) -> None:
    """What ``orch ablation`` would run: its trials and the resources they need."""
    d, r = exp.trial.data, exp.resources
    where = (f"{fs.path} ({fs.fingerprint[:12]}, {len(fs)} clips)" if fs is not None
             else "the built-in benchmark (not built yet: the first real run builds it, ~35 s)")
    console.print(f"dry run of experiment {exp.name!r}: nothing is trained or logged")
    console.print(f"store: {where}")
    console.print(f"splits: train={d.train_split!r}, validation={d.val_split!r} (selects the epoch), "
                  f"test={d.test_split!r}; token {d.token}; {exp.trial.train.epochs} epochs")
    console.print(Columns([f"seed{s}-N{n}" for n in exp.lengths for s in exp.seeds], equal=True))
    console.print(f"{exp.n_trials} trials = {len(exp.seeds)} seeds x {len(exp.lengths)} lengths "
                  f"({', '.join(exp.lengths)})")
    need = f"{r.cpus_per_trial:g} CPU" + (f" + {r.gpus_per_trial:g} GPU" if r.gpus_per_trial else "")
    if address:
        console.print(f"each trial needs {need} (torch threads: {r.threads}); on the cluster at {address}, "
                      f"as many run at once as its free resources allow")
    else:
        cpus = os.cpu_count() or 1
        at_once = int(cpus // r.cpus_per_trial)
        plan = (f"{at_once} trials at a time, {math.ceil(exp.n_trials / at_once)} rounds" if at_once
                else "more than it has: a real run stops with an error")
        console.print(f"each trial needs {need} (torch threads: {r.threads}); this machine has {cpus} CPUs: {plan}")


def _print_skips(rep, limit: int = 30) -> None:
    if not rep.skipped:
        return
    t = Table(title=f"skipped ({len(rep.skipped)})")
    for col in ("item", "reason"):
        t.add_column(col)
    for s in rep.skipped[:limit]:
        t.add_row(s.item, s.reason)
    console.print(t)
    if len(rep.skipped) > limit:
        console.print(f"... and {len(rep.skipped) - limit} more in {rep.path}")


def mlflow_ui_command(wd: Workdir) -> str:
    """The command that serves the MLflow UI on these runs (the mlflow of this environment,
    so it works without activating the virtual environment)."""
    exe = Path(sys.executable).parent / "mlflow"
    mlflow = str(exe) if exe.exists() else "mlflow"
    return f"{mlflow} ui --backend-store-uri '{wd.tracking_uri}' --host 127.0.0.1 --port 5000"


def _print_table(rows: list[report.AblationRow], title: str) -> None:
    t = Table(title=title)
    for col in ("N frames", "UF1 (%)", "UAR (%)", "seeds"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(r.length, report._pm(r.uf1_mean, r.uf1_std), report._pm(r.uar_mean, r.uar_std), str(r.n_seeds))
    console.print(t)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
