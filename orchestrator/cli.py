"""The ``orch`` command line. Thin: parses options, builds the experiment, and hands it to
``orchestrator.execute`` (store, trials, Tune, report)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from orchestrator import execute as ex
from orchestrator.experiment import DEFAULT_LENGTHS, Experiment, Protocol, Resources
from orchestrator.store_cli import store_app
from orchestrator.workdir import ENV_VAR, Workdir
from storage.store import StoreError
from trainables.config import DataConfig, TrainConfig, TrialConfig
from trainables.model import ModelConfig

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="orch: orchestrated micro-expression recognition experiments (Ray Tune + MLflow).")
# soft_wrap: a line longer than the terminal (or than 80 columns in a log, a pipe) is not
# folded by rich, so the commands and paths printed for the user to copy stay whole
console = Console(soft_wrap=True)
app.add_typer(store_app, name="store", help="Look into a frame store: info, verify; publish one to s3:// or gs://.")

# options every training command shares
EPOCHS = typer.Option(TrainConfig.epochs, help="Training epochs per trial.")
TOKEN = typer.Option(DataConfig.token, help="Per-frame token: flow_roi (optical flow pooled over 18 facial "
                     "regions, computed at ingest; the paper's) or pixel_diff (difference to onset).")
CPUS = typer.Option(1.0, help="CPUs per trial (also its torch threads).")
GPUS = typer.Option(0.0, help="GPUs per trial; a fraction packs trials onto one GPU (0.25: four per GPU).")
PACK_SEEDS = typer.Option("1", "--pack-seeds", help="Seeds trained as one model per Ray Tune trial: 1 (each seed "
                          "its own trial), K, or auto (packs sized by each trial's cost so that the worker slots "
                          "finish together). Each seed keeps its own MLflow run; its metrics equal its solo trial's "
                          "to float tolerance (docs/PERFORMANCE.md).")
ALLOW_CPU = typer.Option(False, "--allow-cpu-for-gpu-trials", help="A trial given a GPU trains on the CPU when "
                         "torch has no CUDA (default: it refuses to start). For logical GPUs in tests.")
ADDRESS = typer.Option(None, help="Ray cluster address ('auto' or host:port); default: local Ray.")
STORAGE = typer.Option(None, help="Where Ray Tune keeps results and checkpoints: a path (on a cluster: shared by "
                       "every node, e.g. NFS), file://, s3:// or gs:// URI. Default: WORKDIR/ray_results.")
WORKDIR = typer.Option(None, help=f"Where everything is written (default ${ENV_VAR} or ./orch-work).")
TRACKING_URI = typer.Option(None, "--tracking-uri", help="Where every trial's MLflow run goes, e.g. "
                            "http://HEAD:5000 (an `orch server`; artifacts then go through it); default: "
                            "$MLFLOW_TRACKING_URI, else the workdir's SQLite.")
PROGRESS = typer.Option(True, help="Show the live progress display.")
DRY_RUN = typer.Option(False, "--dry-run", help="Print the trials and the resource plan; run nothing.")
SAVE_YAML = typer.Option(None, "--save-yaml", help="Write the experiment as YAML (for `orch run`) and exit.")
LENGTHS_HELP = "Frames per clip, comma-separated: integers or 'all' (e.g. 4,8,all)."
REUSE = typer.Option(False, "--reuse-across-versions", help="Reuse FINISHED runs of the same trials even if other "
                     "code made them (default: only runs made by the code running now; each run records its code).")
BENCHMARK = typer.Option("default", help="The built-in synthetic benchmark used when no --store is given: "
                         "default (306 clips, 32-64 frames) or dfme-size (DFME's competition split at full size: "
                         "2,629 clips, 259 subjects).")
POSITIONS = typer.Option("learned", help="The model's positions: learned (the paper's: one learned entry per "
                         "frame index) or normalized_time (frame k of a T-frame clip at k/(T-1) of a small learned "
                         "table: the same phase at every clip length; see docs/ARCHITECTURE.md, Length policy).")
STORE_URI = ("A local path, or a file://, s3:// or gs:// URI (a published store: each node fetches it once "
             "into its cache, $ORCH_STORE_CACHE).")
CLASSES = typer.Option(None, help="3 or 7: CAS(ME)^3's 3-class (negative/positive/surprise; 'others' left out) "
                       "or 7-class task. Default: the store's own labels.")


@app.callback()
def _group() -> None:
    """orch: orchestrated micro-expression recognition experiments (Ray Tune + MLflow)."""


def _fail(msg: str) -> None:
    console.print(f"[bold red]error:[/] {msg}")
    raise typer.Exit(2)


def _pack_seeds(text: str) -> int | str:
    if text.strip() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        _fail(f"--pack-seeds: a whole number >= 1 or 'auto', got {text!r}")


def _label_map(classes: Optional[int]) -> str:
    if classes is None:
        return "store"
    if classes not in (3, 7):
        _fail(f"--classes: 3 or 7, got {classes}")
    return f"casme3-{classes}"


def _experiment(name: str, protocol: Protocol, store: Optional[str], seeds: int, lengths: str, epochs: int,
                token: str, label_map: str, cpus: float, gpus: float, allow_cpu: bool = False, pack: str = "1",
                save_model: bool = False,
                benchmark: str = "default", positions: str = "learned") -> Experiment:
    try:
        return Experiment(
            name=name, protocol=protocol, store=str(store) if store else "", benchmark=benchmark,
            seeds=tuple(range(seeds)),
            lengths=tuple(x.strip() for x in lengths.split(",") if x.strip()),
            trial=TrialConfig(data=DataConfig(token=token, label_map=label_map), model=ModelConfig(positions=positions),
                              train=dataclasses.replace(TrainConfig(), epochs=epochs)),
            resources=Resources(cpus, gpus, allow_cpu, _pack_seeds(pack)), save_model=save_model,
        )
    except ValueError as e:
        _fail(str(e))


def _go(exp: Experiment, workdir: Optional[Path], address: Optional[str], progress: bool, dry_run: bool,
        save_yaml: Optional[Path], reuse_across_versions: bool = False, tracking_uri: Optional[str] = None,
        storage: Optional[str] = None) -> None:
    if save_yaml is not None:
        save_yaml.write_text(exp.to_yaml())
        console.print(f"experiment written to {save_yaml}; run it with: orch run {save_yaml}")
        return
    tracking_uri = _tracking_uri(tracking_uri)
    wd = Workdir.resolve(workdir, tracking_uri) if not dry_run else _dry_workdir(workdir, tracking_uri)
    console.print(f"workdir: [bold]{wd.root}[/]")
    from orchestrator import resume_index
    from orchestrator.tune_storage import StorageError, TuneStorage
    from trainables.code_version import code_version

    try:
        tune_storage = TuneStorage.resolve(storage, wd.ray_results, create=False)  # made by run_sweep
    except StorageError as e:
        _fail(str(e))
    wd = dataclasses.replace(wd, storage=tune_storage.uri)
    if dry_run:
        try:
            ex.execute(exp, wd, console, address=address, show_progress=progress, dry_run=True)
        except ex.CommandError as e:
            _fail(str(e))
        return
    _check_server(wd.tracking_uri)
    try:
        with resume_index.driver_lock(wd, exp.name):
            interrupted = resume_index.replaces_unfinished(wd, exp)
            if interrupted:
                console.print(f"[yellow]note:[/] the last command of experiment {exp.name!r} did not finish "
                              f"({interrupted}); `orch resume {exp.name}` will now run this command instead")
            # what `orch resume NAME` runs again
            resume_index.record(wd, exp, address, tune_storage.uri, reuse_across_versions, code_version()["digest"])
            code = ex.execute(exp, wd, console, address=address, show_progress=progress,
                              reuse_across_versions=reuse_across_versions)
            resume_index.mark_finished(wd, exp.name)
    except (ex.CommandError, resume_index.DriverBusy) as e:
        _fail(str(e))
    if code:
        raise typer.Exit(code)


def _dry_workdir(path: Optional[Path], tracking_uri: Optional[str] = None) -> Workdir:
    """A dry run reads the workdir (the cached benchmark) but creates nothing in it."""
    import os

    from orchestrator.workdir import DEFAULT

    return Workdir(Path(path or os.environ.get(ENV_VAR) or DEFAULT).expanduser().resolve(), tracking_uri or None)


def _check_server(uri: str) -> None:
    """A tracking server named by URI must answer before anything starts (a typo would
    otherwise surface minutes later, inside every trial)."""
    from orchestrator.tracking_server import healthy

    if uri.startswith(("http://", "https://")) and not healthy(uri.rstrip("/"), timeout=10):
        _fail(f"tracking server {uri}: no answer at {uri.rstrip('/')}/health (start one with `orch server`, "
              f"or check --tracking-uri / MLFLOW_TRACKING_URI)")


def _tracking_uri(uri: Optional[str]) -> Optional[str]:
    from orchestrator.tracking_server import check_tracking_uri

    try:
        return check_tracking_uri(uri) if uri else None
    except ValueError as e:
        _fail(str(e))


@app.command()
def ablation(
    seeds: int = typer.Option(30, help="Number of random seeds (0 .. seeds-1)."),
    lengths: str = typer.Option(",".join(DEFAULT_LENGTHS), help=LENGTHS_HELP),
    store: Optional[str] = typer.Option(None, help="Frame store to use; default: the built-in synthetic benchmark. " + STORE_URI),
    benchmark: str = BENCHMARK,
    epochs: int = EPOCHS,
    positions: str = POSITIONS,
    token: str = TOKEN,
    experiment: str = typer.Option("ablation", help="Experiment name (MLflow experiment, report folder)."),
    cpus_per_trial: float = CPUS,
    gpus_per_trial: float = GPUS,
    pack_seeds: str = PACK_SEEDS,
    allow_cpu_for_gpu_trials: bool = ALLOW_CPU,
    address: Optional[str] = ADDRESS,
    storage: Optional[str] = STORAGE,
    workdir: Optional[Path] = WORKDIR,
    progress: bool = PROGRESS,
    dry_run: bool = DRY_RUN,
    save_yaml: Optional[Path] = SAVE_YAML,
    reuse_across_versions: bool = REUSE,
    tracking_uri: Optional[str] = TRACKING_URI,
):
    """Frame-length ablation: seeds x N frames as one Ray Tune experiment.

    Split roles (the paper's Section 5.1): train on 'train', choose the best epoch on
    'test_A' (validation), report on 'test_B' (test). Prints the Table 4 layout at the end.
    """
    exp = _experiment(experiment, Protocol("ablation"), store, seeds, lengths, epochs, token, "store",
                      cpus_per_trial, gpus_per_trial, allow_cpu=allow_cpu_for_gpu_trials, pack=pack_seeds, benchmark=benchmark, positions=positions)
    _go(exp, workdir, address, progress, dry_run, save_yaml, reuse_across_versions, tracking_uri, storage)


@app.command()
def loso(
    store: Optional[str] = typer.Option(None, help="Frame store (e.g. ingested CAS(ME)^3 Part A); default: the "
                                         "built-in benchmark. " + STORE_URI),
    classes: Optional[int] = CLASSES,
    seeds: int = typer.Option(1, help="Number of random seeds (0 .. seeds-1): trials = folds x seeds."),
    lengths: str = typer.Option("all", help=LENGTHS_HELP),
    validation_fraction: float = typer.Option(0.2, help="Share of each fold's training subjects drawn (per seed) "
                                              "as validation subjects, which choose the epoch."),
    use_splits: str = typer.Option("", help="Store splits whose clips take part, comma-separated (default: all)."),
    benchmark: str = BENCHMARK,
    epochs: int = EPOCHS,
    positions: str = POSITIONS,
    token: str = TOKEN,
    experiment: str = typer.Option("loso", help="Experiment name (MLflow experiment, report folder)."),
    cpus_per_trial: float = CPUS,
    gpus_per_trial: float = GPUS,
    pack_seeds: str = PACK_SEEDS,
    allow_cpu_for_gpu_trials: bool = ALLOW_CPU,
    address: Optional[str] = ADDRESS,
    storage: Optional[str] = STORAGE,
    workdir: Optional[Path] = WORKDIR,
    progress: bool = PROGRESS,
    dry_run: bool = DRY_RUN,
    save_yaml: Optional[Path] = SAVE_YAML,
    reuse_across_versions: bool = REUSE,
    tracking_uri: Optional[str] = TRACKING_URI,
):
    """Leave-one-subject-out: one fold per subject, folds x seeds trials on Ray Tune.

    In each fold the held-out subject is the test set; the best epoch is chosen on
    validation subjects drawn from the *training* subjects (never the held-out one).
    Reports pooled UF1/UAR (predictions of all folds concatenated) and per-fold mean ± std,
    per-class recall and the pooled confusion matrix.
    """
    try:
        proto = Protocol("loso", validation_fraction=validation_fraction,
                         use_splits=tuple(x.strip() for x in use_splits.split(",") if x.strip()))
    except ValueError as e:
        _fail(str(e))
    exp = _experiment(experiment, proto, store, seeds, lengths, epochs, token, _label_map(classes),
                      cpus_per_trial, gpus_per_trial, allow_cpu=allow_cpu_for_gpu_trials, pack=pack_seeds, benchmark=benchmark, positions=positions)
    _go(exp, workdir, address, progress, dry_run, save_yaml, reuse_across_versions, tracking_uri, storage)


@app.command()
def split(
    store: Optional[str] = typer.Option(None, help="Frame store (e.g. ingested DFME); default: the built-in benchmark. " + STORE_URI),
    seeds: int = typer.Option(5, help="Number of random seeds (0 .. seeds-1); each draws its own validation subjects."),
    lengths: str = typer.Option("all", help=LENGTHS_HELP),
    train_split: str = typer.Option("train", help="The store split divided into train and validation."),
    tests: str = typer.Option("test_A,test_B", help="Store splits the selected epoch predicts, comma-separated."),
    validation_fraction: float = typer.Option(0.2, help="Share of the training split's subjects drawn (per seed) "
                                              "as validation (4:1 by default), subject-disjoint."),
    benchmark: str = BENCHMARK,
    epochs: int = EPOCHS,
    positions: str = POSITIONS,
    token: str = TOKEN,
    save_model: bool = typer.Option(True, help="Keep each run's selected parameters (for orch predict)."),
    experiment: str = typer.Option("split", help="Experiment name (MLflow experiment, report folder)."),
    cpus_per_trial: float = CPUS,
    gpus_per_trial: float = GPUS,
    pack_seeds: str = PACK_SEEDS,
    allow_cpu_for_gpu_trials: bool = ALLOW_CPU,
    address: Optional[str] = ADDRESS,
    storage: Optional[str] = STORAGE,
    workdir: Optional[Path] = WORKDIR,
    progress: bool = PROGRESS,
    dry_run: bool = DRY_RUN,
    save_yaml: Optional[Path] = SAVE_YAML,
    reuse_across_versions: bool = REUSE,
    tracking_uri: Optional[str] = TRACKING_URI,
):
    """DFME's competition split (the paper's Section 4.2, Tables 2 and 3).

    The train split is divided 4:1 into train and validation with disjoint subjects, drawn
    per seed; the best-validation epoch predicts test_A and test_B; UF1, UAR and ACC on
    each (unlabelled test splits: predictions only, for orch predict).
    """
    try:
        proto = Protocol("split", train_split=train_split, validation_fraction=validation_fraction,
                         test_splits=tuple(x.strip() for x in tests.split(",") if x.strip()))
    except ValueError as e:
        _fail(str(e))
    exp = _experiment(experiment, proto, store, seeds, lengths, epochs, token, "store",
                      cpus_per_trial, gpus_per_trial, allow_cpu=allow_cpu_for_gpu_trials, pack=pack_seeds, save_model=save_model, benchmark=benchmark, positions=positions)
    _go(exp, workdir, address, progress, dry_run, save_yaml, reuse_across_versions, tracking_uri, storage)


@app.command()
def search(
    space: Path = typer.Option(..., help="Search space YAML: config paths (train.lr, model.depth, ...) to domains "
                               "(loguniform, uniform, randint, choice, grid)."),
    protocol: str = typer.Option("split", help="split or loso: the protocol whose train/validation data the search "
                                 "uses, and which the best configuration is then run as."),
    samples: int = typer.Option(8, help="Configurations drawn (each grid point this many times)."),
    store: Optional[str] = typer.Option(None, help="Frame store; default: the built-in benchmark. " + STORE_URI),
    classes: Optional[int] = CLASSES,
    seeds: int = typer.Option(5, help="Seeds the best configuration is re-run over (the search uses seed 0's split)."),
    lengths: str = typer.Option("all", help=LENGTHS_HELP + " The search uses the first."),
    benchmark: str = BENCHMARK,
    epochs: int = EPOCHS,
    positions: str = POSITIONS,
    token: str = TOKEN,
    grace_period: Optional[int] = typer.Option(None, help="ASHA: epochs every configuration trains before it may "
                                               "be stopped (default: 2, or the epochs if fewer)."),
    experiment: str = typer.Option("search", help="Experiment name (MLflow experiment, report folder)."),
    cpus_per_trial: float = CPUS,
    gpus_per_trial: float = GPUS,
    pack_seeds: str = PACK_SEEDS,
    allow_cpu_for_gpu_trials: bool = ALLOW_CPU,
    address: Optional[str] = ADDRESS,
    storage: Optional[str] = STORAGE,
    workdir: Optional[Path] = WORKDIR,
    progress: bool = PROGRESS,
    dry_run: bool = DRY_RUN,
    save_yaml: Optional[Path] = SAVE_YAML,
    reuse_across_versions: bool = REUSE,
    tracking_uri: Optional[str] = TRACKING_URI,
):
    """Hyperparameter search on Ray Tune (random / grid, ASHA early stopping on validation
    UF1), then the best configuration re-run over seeds and reported like its protocol.

    The searcher sees validation metrics only, and its trials load no test data at all.
    """
    from orchestrator.experiment import SearchSpec
    from orchestrator.yaml_file import read_yaml

    if protocol not in ("split", "loso"):
        _fail(f"--protocol: split or loso, got {protocol!r}")
    exp = _experiment(experiment, Protocol(protocol), store, seeds, lengths, epochs, token,
                      _label_map(classes) if protocol == "loso" else "store", cpus_per_trial, gpus_per_trial,
                      allow_cpu=allow_cpu_for_gpu_trials, pack=pack_seeds, save_model=protocol == "split", benchmark=benchmark, positions=positions)
    try:
        exp = dataclasses.replace(exp, search=SearchSpec(read_yaml(space), samples, grace_period))
    except ValueError as e:
        _fail(f"{space}: {e}" if str(space) not in str(e) else str(e))
    _go(exp, workdir, address, progress, dry_run, save_yaml, reuse_across_versions, tracking_uri, storage)


@app.command()
def run(
    experiment_yaml: Path = typer.Argument(..., help="An experiment file (write one with --save-yaml on any command)."),
    address: Optional[str] = ADDRESS,
    storage: Optional[str] = STORAGE,
    workdir: Optional[Path] = WORKDIR,
    progress: bool = PROGRESS,
    dry_run: bool = DRY_RUN,
    reuse_across_versions: bool = REUSE,
    tracking_uri: Optional[str] = TRACKING_URI,
):
    """Run the experiment a YAML file describes (protocol, store, label map, model,
    optimiser, schedule, epochs, seeds, resources; a search first, if it has one)."""
    try:
        exp = Experiment.from_yaml(experiment_yaml)
    except ValueError as e:
        _fail(str(e))
    _go(exp, workdir, address, progress, dry_run, None, reuse_across_versions, tracking_uri, storage)


@app.command()
def resume(
    name: str = typer.Argument(..., help="The experiment name (--experiment, or `name:` of the YAML) of the command "
                               "whose driver died."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (default: $RAY_ADDRESS, else the one the "
                                          "command used)."),
    tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                                               "the one the command used)."),
    storage: Optional[str] = typer.Option(None, help="Ray Tune storage (default: the one the command used)."),
    workdir: Optional[Path] = WORKDIR,
    progress: bool = PROGRESS,
):
    """Run an interrupted command again (its driver crashed or was killed): its Tune
    experiments are restored, interrupted trials continue from their last checkpoint and
    their MLflow runs, finished trials are not run again; then its reports."""
    from orchestrator.resume import resume as run_resume

    tracking_uri = _tracking_uri(tracking_uri)
    wd = Workdir.resolve(workdir)
    console.print(f"workdir: [bold]{wd.root}[/]")
    try:
        code = run_resume(name, wd, console, address=address, tracking_uri=tracking_uri, storage=storage,
                          show_progress=progress)
    except ex.CommandError as e:
        _fail(str(e))
    if code:
        raise typer.Exit(code)


@app.command()
def predict(
    run_id: str = typer.Option(..., "--run", help="The MLflow run whose selected parameters predict."),
    split: str = typer.Option("test_B", help="The store split to predict."),
    out: Path = typer.Option(Path("prediction.txt"), help="Where to write the predictions."),
    store: Optional[str] = typer.Option(None, help="The store, a path or URI (default: the one the run recorded; its "
                                         "fingerprint must match the run's)."),
    workdir: Optional[Path] = WORKDIR,
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="Where the run is (default: "
                                               "$MLFLOW_TRACKING_URI, else the workdir's SQLite)."),
):
    """The CCAC2024 submission format: one integer label per line (the class index in the
    run's label order; DFME's EmotionId for a DFME store), in the order of the split's
    samples as the store holds them — the annotation sheet's order."""
    import tempfile

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from storage.store_cache import open_store as open_any_store
    from trainables.predict import predict as run_predict
    from trainables.trainable import MODEL_ARTIFACT

    wd = _dry_workdir(workdir, _tracking_uri(tracking_uri))
    client = MlflowClient(wd.tracking_uri)
    try:
        r = client.get_run(run_id)
    except MlflowException as e:
        _fail(f"--run {run_id}: not found in {wd.tracking_uri} ({str(e).splitlines()[0]})")
    if r.info.status != "FINISHED":
        _fail(f"--run {run_id}: status {r.info.status}; only a FINISHED run has its selected parameters")
    p = r.data.params
    path = store or p.get("data.store", "")
    try:
        fs, _lease = open_any_store(path)
    except (StoreError, ValueError) as e:
        _fail(str(e))
    if fs.fingerprint != p.get("data.store_fingerprint"):
        _fail(f"{path}: store fingerprint {fs.fingerprint[:12]} is not the run's "
              f"({p.get('data.store_fingerprint', '?')[:12]}): the run trained on another store")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            saved = Path(client.download_artifacts(run_id, MODEL_ARTIFACT, tmp)).read_bytes()
        except (MlflowException, OSError):
            _fail(f"--run {run_id}: no {MODEL_ARTIFACT} artifact (the experiment ran with save_model off; "
                  f"orch split keeps it by default)")
    try:
        pred = run_predict(saved, fs, split)
    except ValueError as e:
        _fail(str(e))
    out.write_text("".join(f"{int(k)}\n" for k in pred.predicted))
    console.print(f"{len(pred.clip_ids)} predictions of split {split!r} written to {out} "
                  f"(one class index per line, store order; classes: "
                  + ", ".join(f"{i}={c}" for i, c in enumerate(pred.classes)) + ")")


@app.command("table")
def table_command(
    name: str = typer.Argument(..., help="The experiment (its MLflow experiment's name)."),
    fmt: str = typer.Option("md", "--format", help="md (Markdown), latex (a table environment; booktabs) or csv "
                            "(the paper's table, raw values)."),
    out: Optional[Path] = typer.Option(None, help="Write the table to this file instead of printing it."),
    sweep: Optional[str] = typer.Option(None, help="Which sweep of the experiment (its orch.sweep_parent tag); "
                                        "default: the newest."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="Where the runs are (default: "
                                               "$MLFLOW_TRACKING_URI, else the workdir's SQLite)."),
    workdir: Optional[Path] = WORKDIR,
):
    """An experiment's table (Table 4, Tables 2-3 or Table 1, with its notes) rebuilt from
    the tracking store alone: the sweep's parent run and its children, no workdir files."""
    import sys

    from orchestrator.reports.from_mlflow import TableError, rebuild
    from orchestrator.reports.report import FORMATS

    if fmt not in FORMATS:
        _fail(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    wd = _dry_workdir(workdir, _tracking_uri(tracking_uri))
    if wd.tracking_uri == wd.local_tracking_uri and not (wd.root / "mlflow.db").exists():
        _fail(f"no tracking store at {wd.root / 'mlflow.db'} (give --workdir or --tracking-uri)")
    try:
        got = rebuild(wd.tracking_uri, name, sweep)
    except TableError as e:
        _fail(str(e))
    if got.others:
        typer.echo(f"sweep {got.sweep} (parent run {got.parent_run_id}{'' if sweep else ', the newest'}); the "
                   f"experiment's other sweeps: "
                   f"{', '.join(got.others)} (--sweep KEY picks one)", err=True)
    text = got.report.render(fmt)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        typer.echo(f"wrote {out}", err=True)


@app.command()
def ingest(
    source: Path = typer.Argument(..., help="Dataset root (dfme, casme3) or the manifest file (manifest)."),
    format: str = typer.Option(..., "--format", help="Layout of SOURCE: dfme (DFME / CCAC2024), casme3 "
                               "(CAS(ME)^3 Part A) or manifest (CSV of videos / frame folders)."),
    out: str = typer.Option(..., help="Where to write the frame store: a local path, or an s3:// / gs:// URI "
                            "(written locally, then published: data files first, the completion marker last)."),
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
    overwrite: bool = typer.Option(False, help="Replace an existing store at OUT (only a store: a folder or prefix "
                                   "holding anything else is refused)."),
):
    """Turn a dataset in its official layout into a frame store, and report every clip that
    could not be used, with its reason (printed, and as JSON beside the store).

    Sources above 100 fps are normalised to 100 fps (only the frames kept are decoded)."""
    import shutil

    from orchestrator.store_uri import ingest_target, publish_ingested
    from storage import formats
    from storage import ingest as ingest_mod

    try:
        opts = ingest_mod.IngestOptions(size=size, color=color, crop=crop, features=features)
        plan = formats.plan(format, source, annotations=list(annotations or []), damaged=damaged,
                            max_clip_frames=max_clip_frames, fps=fps,
                            labels=[x.strip() for x in labels.split(",")] if labels else None)
    except (ValueError, formats.SourceError) as e:
        _fail(str(e))
    try:  # before any clip is read: a destination that cannot take the store is refused now
        target, staging = ingest_target(out, overwrite)
    except (ValueError, StoreError) as e:
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
            rep = ingest_mod.ingest(plan.sources, target, labels=plan.labels, options=opts, workers=workers,
                                    mapper=mapper, pre_skipped=plan.skipped, overwrite=overwrite and not staging,
                                    metadata={"format": format, "source": str(source.resolve())},
                                    progress=lambda i, n: bar.update(task, completed=i))
        if staging:
            rep = publish_ingested(rep, out, console, overwrite)
    except (ValueError, StoreError) as e:
        _fail(str(e))
    finally:
        if started:
            ray.shutdown()
        if staging:
            shutil.rmtree(staging, ignore_errors=True)
    _print_skips(rep)
    _print_several_faces(rep)
    console.print(f"{rep.written} clips written, {len(rep.skipped)} skipped, {rep.frames_read} frames read, "
                  f"{len(rep.notes)} damaged frames replaced, {rep.seconds:.1f} s")
    console.print(f"store: {out}  report: {rep.store + '.ingest.json' if staging else rep.path}")
    if strict and rep.skipped:
        console.print(f"[red]--strict:[/] {len(rep.skipped)} clips skipped")
        raise typer.Exit(1)


@app.command()
def server(
    host: Optional[str] = typer.Option(None, help="Interface to listen on (default 127.0.0.1: this machine only). "
                                       "Another (the head's address, 0.0.0.0) only when named here."),
    port: int = typer.Option(5000, help="Port to listen on."),
    backend_store_uri: Optional[str] = typer.Option(None, help="Database of runs (default: the workdir's SQLite; "
                                                    "postgresql://USER@HOST/DB for a shared head)."),
    allowed_hosts: Optional[str] = typer.Option(None, help="Host headers accepted, comma-separated (default: "
                                                "the loopback names and the --host's, every name of this "
                                                "machine for 0.0.0.0)."),
    workers: int = typer.Option(2, help="Server worker processes."),
    workdir: Optional[Path] = WORKDIR,
):
    """MLflow's tracking server for a cluster's trials: runs in the workdir's SQLite (or
    --backend-store-uri), artifacts served through it (under the workdir's mlartifacts/), so
    workers need no shared path. Prints the --tracking-uri to give the training commands;
    Ctrl-C stops it."""
    from orchestrator import tracking_server as ts

    wd = Workdir.resolve(workdir)
    try:
        spec = ts.spec_for(wd.root, host, port, backend_store_uri, workers, allowed_hosts)
        code = ts.serve(spec, say=console.print)
    except ts.ServerError as e:
        _fail(str(e))
    raise typer.Exit(code)


@app.command()
def ui(
    port: int = typer.Option(5000, help="Port on 127.0.0.1 (0: a free one; the address is printed)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="Where the runs are: an `orch server` "
                                               "(http://HEAD:5000 serves the UI itself: open it) or a database URI "
                                               "(default: $MLFLOW_TRACKING_URI, else the workdir's SQLite)."),
    backend_store_uri: Optional[str] = typer.Option(None, help="Database of runs (same as a database --tracking-uri)."),
    workdir: Optional[Path] = WORKDIR,
):
    """The MLflow UI on 127.0.0.1 over the workdir's runs (the local case; a cluster's runs
    are browsed on its `orch server`). Prints the address of each experiment's runs; Ctrl-C
    stops it."""
    from orchestrator import tracking_server as ts

    wd = _dry_workdir(workdir, _tracking_uri(tracking_uri))
    uri = backend_store_uri or wd.tracking_uri
    if uri.startswith(("http://", "https://")):
        console.print(f"the runs are on the tracking server {uri}: open {uri} in a browser (it serves the UI)")
        return
    if uri == wd.local_tracking_uri and not (wd.root / "mlflow.db").exists():
        _fail(f"{wd.root / 'mlflow.db'}: no runs in this workdir yet (--workdir names another)")
    try:
        spec = ts.spec_for(wd.root, ts.DEFAULT_HOST, port, uri, workers=1)
        # each experiment's address, printed once the UI answers (as it is: a name may hold "[")
        code = ts.serve(spec, say=lambda line: console.print(line, markup=False),
                        ready=lambda s: ts.ui_ready(s, ts.experiment_pages(uri)))
    except ts.ServerError as e:
        _fail(str(e))
    raise typer.Exit(code)


def _print_several_faces(rep, limit: int = 30) -> None:
    """The clips whose onset frame held several detections: every box and score, the one used
    (best score) first."""
    if not rep.several_faces:
        return
    t = Table(title=f"several faces found: the best-scoring one used ({len(rep.several_faces)} clips)")
    for col in ("clip", "used", "also found"):
        t.add_column(col)
    for clip_id, found in list(rep.several_faces.items())[:limit]:
        t.add_row(clip_id, f"{found[0]['box']} score {found[0]['score']:.2f}",
                  ", ".join(f"{d['box']} score {d['score']:.2f}" for d in found[1:]))
    console.print(t)
    if len(rep.several_faces) > limit:
        console.print(f"... and {len(rep.several_faces) - limit} more in {rep.path}")


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
