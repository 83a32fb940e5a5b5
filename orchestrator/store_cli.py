"""``orch store info``, ``orch store verify`` and ``orch store publish``: what a frame store
holds, whether it is intact, and publishing one to an object store. Thin: the counting and
the checks are ``storage.inspect``'s, the publishing ``storage.location``'s.

STORE may be a local path or a URI (``file://``, ``s3://``, ``gs://``); a remote store is
fetched into this machine's cache first (``storage.store_cache``), which verifies it.

Exit codes of ``verify``: 0 every check passed, 1 a check failed, 2 STORE is not a frame
store (it does not open; for a remote store: it cannot be fetched and verified)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from storage.inspect import Status, StoreSummary, summarize, verify
from storage.store import StoreError

store_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Inspect and check frame stores.")
console = Console()

_MARKS = {Status.PASSED: "[green]✓[/]", Status.FAILED: "[bold red]✗[/]", Status.SKIPPED: "[yellow]-[/]"}
_SUBJECTS_SHOWN = 12  # per split; the rest are counted


def _fail(msg: str) -> NoReturn:
    console.print(f"[bold red]error:[/] {escape(msg)}", soft_wrap=True)
    raise typer.Exit(2)


STORE_ARG = typer.Argument(..., help="The frame store: a directory holding clips.arrow and frames.arrow, or the "
                           "URI of a published store (file://, s3://, gs://).")


def _local(store: str, quiet: bool = False) -> Path:
    """STORE's local directory: itself, or a remote store's verified copy in the cache (what
    the fetch says goes to stderr when ``quiet``, e.g. under --json)."""
    from orchestrator.store_uri import open_remote
    from storage.location import is_remote, local_path

    try:
        return open_remote(store, Console(stderr=True) if quiet else console).path if is_remote(store) \
            else local_path(store)
    except (StoreError, ValueError) as e:
        _fail(str(e))


@store_app.command()
def info(
    store: str = STORE_ARG,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Clips per split, class, subject and dataset; frame rates; clip lengths; size."""
    try:
        summary = summarize(_local(store, quiet=as_json))
    except StoreError as e:
        _fail(str(e))
    summary = dataclasses.replace(summary, path=store)
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
        return
    for table in (_overview(summary), _split_classes(summary), _subjects(summary), _frame_rates(summary),
                  _lengths(summary)):
        if table is not None:
            console.print(table)


@store_app.command("verify")
def verify_command(store: str = STORE_ARG):
    """Check a store's files, offsets, labels, annotations and content fingerprint."""
    result = verify(_local(store))
    opened = result.check("open")
    if opened.status is not Status.PASSED:
        _fail(opened.message)
    width = max(len(c.name) for c in result.checks)
    for c in result.checks:
        console.print(f"{_MARKS[c.status]} {c.name:<{width}}  {escape(c.message)}", soft_wrap=True)
    failed = sum(c.status is Status.FAILED for c in result.checks)
    if failed:
        console.print(f"[bold red]{store}: {failed} of {len(result.checks)} checks failed[/]", soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"[green]{store}: all {len(result.checks)} checks passed[/]", soft_wrap=True)


@store_app.command("publish")
def publish_command(
    store: Path = typer.Argument(..., help="The local frame store to publish."),
    uri: str = typer.Argument(..., help="Where: an s3:// or gs:// URI (credentials from the usual environment; "
                              "AWS_ENDPOINT_URL for an S3-compatible server)."),
    overwrite: bool = typer.Option(False, help="Replace a store published at URI (only a store: a prefix holding "
                                   "anything else is refused)."),
):
    """Upload a store so that every node of a cluster can fetch it (--store URI): it is
    verified first, its data files go up first and the completion marker last, so a half
    upload is never a store."""
    from orchestrator.store_uri import publish_store

    try:
        publish_store(store, uri, console, overwrite=overwrite)
    except (StoreError, ValueError) as e:
        _fail(str(e))
    console.print(f"use it with --store {escape(uri)}", soft_wrap=True)


def _overview(s: StoreSummary) -> Table:
    t = Table(title=f"store {s.path}", show_header=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    rows = [
        ("fingerprint", s.fingerprint),
        ("clips", str(s.n_clips)),
        ("frames", str(s.n_frames)),
        ("frame shape", " x ".join(map(str, s.frame_shape))),
        ("labels", ", ".join(s.labels)),
        ("features", ", ".join(f"{k} [{' x '.join(map(str, v))}] per frame" for k, v in s.features.items()) or "none"),
        ("datasets", _counts(s.datasets)),
        ("splits", _counts(s.splits)),
        ("size on disk", human_bytes(s.size_bytes)),
        *((f"user: {k}", v) for k, v in s.user_metadata.items()),
    ]
    for name, value in rows:
        t.add_row(name, escape(value))
    return t


def _split_classes(s: StoreSummary) -> Table:
    t = Table(title="clips per split and class")
    t.add_column("split")
    for c in s.classes:
        t.add_column(escape(c), justify="right")
    t.add_column("total", justify="right", style="bold")
    for split, counts in s.split_classes.items():
        t.add_row(escape(split), *map(str, counts.values()), str(s.splits[split]))
    t.add_row("total", *map(str, s.classes.values()), str(s.n_clips), style="bold")
    return t


def _subjects(s: StoreSummary) -> Table:
    t = Table(title=f"subjects ({len(s.subjects)})")
    for col in ("split", "subjects", "clips per subject"):
        t.add_column(col, justify="right" if col == "subjects" else "left")
    for split in s.splits:
        per_subject = {subject: splits[split] for subject, splits in s.subjects.items() if split in splits}
        shown = [f"{subject} ({n})" for subject, n in list(per_subject.items())[:_SUBJECTS_SHOWN]]
        if len(per_subject) > _SUBJECTS_SHOWN:
            shown.append(f"… {len(per_subject) - _SUBJECTS_SHOWN} more")
        t.add_row(escape(split), str(len(per_subject)), escape(", ".join(shown)))
    return t


def _frame_rates(s: StoreSummary) -> Table:
    t = Table(title="clips per frame rate")
    for col in ("fps", "source", "stored"):
        t.add_column(col, justify="right")
    for fps in sorted(set(s.source_fps) | set(s.fps)):
        t.add_row(f"{fps:g}", str(s.source_fps.get(fps, 0)), str(s.fps.get(fps, 0)))
    return t


def _lengths(s: StoreSummary) -> Table | None:
    if s.lengths is None:
        return None
    t = Table(title="stored frames per clip")
    for col in ("min", "p10", "median", "mean", "p90", "max"):
        t.add_column(col, justify="right")
    n = s.lengths
    t.add_row(str(n.min), f"{n.p10:g}", f"{n.median:g}", f"{n.mean:.1f}", f"{n.p90:g}", str(n.max))
    return t


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} ({n})" for name, n in counts.items())


def human_bytes(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
