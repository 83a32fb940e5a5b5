"""The driver's side of stores by URI: open a remote store (fetched into this machine's
cache, with progress), publish a local one (with progress), and publish the built-in
benchmark for a cluster. The logic is ``storage.location`` / ``storage.store_cache``'s."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from storage.ingest import IngestReport
from storage.location import Manifest, check_destination, is_remote, local_path, publish, upload_file
from storage.store import FrameStore, check_replaceable
from storage.store_cache import CachedStore, StoreCache

_LEASES: dict[str, CachedStore] = {}  # the driver's leases: its cached copies stay while it maps them


def _bar(what: str, console: Console) -> Progress:
    return Progress(TextColumn(escape(what)), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=console, transient=True, disable=not console.is_terminal)


def open_remote(uri: str, console: Console) -> FrameStore:
    """The store published at ``uri``, from this machine's cache (fetched and verified the
    first time); StoreError naming the URI and the reason when it cannot be."""
    if uri in _LEASES:
        return _LEASES[uri].store
    cache = StoreCache.for_node(None)
    with _bar(f"fetching {uri}", console) as bar:
        task = bar.add_task("", total=None)
        cached = cache.open(uri, progress=lambda done, total: bar.update(task, completed=done, total=total),
                            log=lambda msg: console.print(escape(msg), soft_wrap=True))
    _LEASES[uri] = cached
    return cached.store


def publish_store(store: str | Path, uri: str, console: Console, overwrite: bool = False) -> Manifest:
    """Upload the local store to ``uri`` (data files first, the marker last), with progress."""
    with _bar(f"publishing to {uri}", console) as bar:
        task = bar.add_task("", total=None)
        manifest = publish(store, uri, overwrite=overwrite,
                           progress=lambda done, total: bar.update(task, completed=done, total=total))
    console.print(f"published {escape(str(store))} to {escape(uri)}: fingerprint {manifest.fingerprint[:12]}, "
                  f"{manifest.clips} clips, {manifest.size / 2**20:.1f} MiB", soft_wrap=True)
    return manifest


def publish_benchmark(local: Path, base_uri: str, console: Console) -> str:
    """The built-in benchmark store ``local`` (built by ``execute.builtin_store``) published
    under ``base_uri`` as ``BASE/<its directory name>`` — reused if that store is already
    there (same fingerprint) — so that trials on other nodes can fetch it. Returns the URI.

    Called when the run's stores must be reachable from other nodes (a remote
    ``--storage``; ``execute.open_store``), which puts the URI in the trial config only: the
    experiment keeps naming the benchmark while its trials fetch the published copy."""
    from storage.location import read_manifest
    from storage.store import StoreError

    if not is_remote(base_uri):
        raise ValueError(f"{base_uri}: the benchmark is published to an s3:// or gs:// URI")
    uri = f"{base_uri.rstrip('/')}/{local.name}"
    fingerprint = FrameStore(local).fingerprint
    try:
        if read_manifest(uri).fingerprint == fingerprint:
            console.print(f"benchmark store published at {uri} (already there)")
            return uri
    except StoreError:
        pass
    publish_store(local, uri, console, overwrite=True)
    return uri


def ingest_target(out: str, overwrite: bool) -> tuple[Path, Path | None]:
    """Where ``orch ingest --out OUT`` writes: OUT itself when it is local, or, for a URI, a
    store in a fresh temporary directory (under ``$TMPDIR``; returned second, for the caller
    to remove) that is published after. Checked before any clip is read: a URI that cannot
    take a store, or (with ``overwrite``) a folder or prefix that is not a store."""
    if not is_remote(out):
        path = local_path(out)
        if overwrite:
            check_replaceable(path)
        return path, None
    check_destination(out, overwrite)
    staging = Path(tempfile.mkdtemp(prefix="orch-ingest-"))
    return staging / "store", staging


def publish_ingested(rep: IngestReport, uri: str, console: Console, overwrite: bool) -> IngestReport:
    """Publish the store ingest wrote locally to ``uri``, and its report beside it
    (``URI.ingest.json``); the report comes back naming the URI."""
    publish_store(Path(rep.store), uri, console, overwrite=overwrite)
    rep = dataclasses.replace(rep, store=uri.rstrip("/"))
    local = Path(tempfile.mkdtemp(prefix="orch-report-")) / "ingest.json"
    try:
        local.write_text(rep.to_json())
        upload_file(local, f"{rep.store}.ingest.json")
    finally:
        shutil.rmtree(local.parent, ignore_errors=True)
    return rep
