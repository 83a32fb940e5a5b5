"""Where a store lives: a local path, a ``file://`` URI, or an ``s3://`` / ``gs://`` URI —
and publishing a store to an object store.

Remote stores are reached through ``pyarrow.fs`` (credentials from the usual environment:
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_PROFILE`` / instance roles for S3,
``AWS_ENDPOINT_URL`` for an S3-compatible server such as MinIO; Google's application default
credentials for GCS). A local path or ``file://`` URI is opened where it is; a remote store
is fetched into a node-local cache first (``storage.store_cache``) and memory-mapped there.

A published store at ``PREFIX`` is the store's own files side by side, like a local store,
plus a completion marker written last::

    PREFIX/clips.arrow
    PREFIX/frames.arrow
    PREFIX/features.arrow      (when the store has features)
    PREFIX/orch-store.json     the marker: fingerprint, every file with its size

How a publish is atomic on object stores that have no rename: each object is written by
one PUT (a multipart upload for large ones), and an object store makes an object visible
only once its upload completed — never half of it. The data files are uploaded first, the
marker last; readers require the marker and check every file's size against it, then the
content fingerprint (``FrameStore.verify``) against the marker's before they use a byte.
So an interrupted upload (files but no marker) is refused as "not a published store", and
files changed under a marker (a concurrent overwrite, damage) fail the size or fingerprint
check. ``--overwrite`` deletes the old marker *first*, so while the new files go up the
prefix is no store at all (readers are refused, never served a mixture); the new marker
comes last. Only a prefix that holds nothing but a store's files (a store, or a publish
that was interrupted) is replaced; anything else there is refused, by name.

Imports neither Ray nor MLflow.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow.fs as pafs

from storage.store import CLIPS_FILE, FEATURES_FILE, FRAMES_FILE, MARKER, STORE_FILES, FrameStore, StoreError, foreign_files

MARKER_FORMAT = "orch-store"
REMOTE_SCHEMES = ("s3", "gs", "gcs")
_CHUNK = 8 * 2**20
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


def is_remote(location: str | os.PathLike) -> bool:
    """Whether ``location`` is an object-store URI (``s3://``, ``gs://``) rather than a
    local path or ``file://`` URI."""
    scheme = urlparse(str(location)).scheme.lower()
    return len(scheme) > 1 and scheme in REMOTE_SCHEMES


def check_location(location: str) -> str:
    """``location`` back if orch can reach it; ValueError naming it otherwise."""
    scheme = urlparse(str(location)).scheme.lower()
    if "://" in str(location) and scheme not in (*REMOTE_SCHEMES, "file"):
        raise ValueError(f"{location}: unsupported store URI scheme {scheme!r} (a local path, file://, s3:// or gs://)")
    return location


def local_path(location: str | os.PathLike) -> Path:
    """The local path of a local location (``file:///x/y`` -> ``/x/y``)."""
    s = str(check_location(str(location)))
    if is_remote(s):
        raise ValueError(f"{s}: not a local path")
    if s.startswith("file://"):
        parsed = urlparse(s)
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"{s}: a file:// URI names this machine's files (file:///path), not host {parsed.netloc!r}")
        return Path(unquote(parsed.path))
    return Path(s).expanduser()


def remote_fs(uri: str, create_bucket: bool = False) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of ``uri`` and the path in it (no trailing slash)."""
    check_location(uri)
    base = uri.rstrip("/")
    if create_bucket and urlparse(base).scheme.lower() == "s3":
        base += ("&" if "?" in base else "?") + "allow_bucket_creation=true"
    try:
        fs, path = pafs.FileSystem.from_uri(base)
        path = path.rstrip("/")
    except (ValueError, OSError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise StoreError(f"{uri}: cannot reach this location ({e})") from e
    if create_bucket:
        bucket = path.split("/")[0]
        try:
            if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                fs.create_dir(bucket)  # S3: allowed by allow_bucket_creation
        except OSError as e:
            raise StoreError(f"{uri}: bucket {bucket!r} is not there and cannot be created ({e})") from e
    return fs, path


@dataclass(frozen=True)
class Manifest:
    """A published store's marker: what a complete upload holds."""

    uri: str
    fingerprint: str
    files: dict[str, int]  # file name -> size in bytes
    clips: int = 0

    @property
    def size(self) -> int:
        return sum(self.files.values())


def read_manifest(uri: str) -> Manifest:
    """The marker of the store published at ``uri``; StoreError naming the URI and the reason
    (no marker: an interrupted upload or no store; a marker that is not orch's)."""
    fs, base = remote_fs(uri)
    where = f"{uri.rstrip('/')}/{MARKER}"
    try:
        with fs.open_input_stream(f"{base}/{MARKER}") as f:
            raw = f.read()
    except FileNotFoundError:
        present = _listing(fs, base)
        what = (f"it holds {', '.join(sorted(present))} but no {MARKER}: an upload that did not finish "
                f"(publish it again: orch store publish / orch ingest --out URI --overwrite)" if present
                else "nothing is there")
        raise StoreError(f"{uri}: not a published orch store — {what}") from None
    except OSError as e:
        raise StoreError(f"{where}: cannot read ({e})") from e
    try:
        d = json.loads(raw)
        if d.get("format") != MARKER_FORMAT:
            raise ValueError(f"format {d.get('format')!r}, expected {MARKER_FORMAT!r}")
        fingerprint = str(d["fingerprint"])
        if not _FINGERPRINT.match(fingerprint):
            raise ValueError(f"fingerprint {fingerprint!r} is not a sha256 hex digest")
        files = {str(f["name"]): int(f["size"]) for f in d["files"]}
        bad = sorted(set(files) - set(STORE_FILES))
        if bad or not {CLIPS_FILE, FRAMES_FILE} <= set(files):
            raise ValueError(f"files {sorted(files)}: expected {CLIPS_FILE}, {FRAMES_FILE} and optionally {FEATURES_FILE}")
    except (ValueError, KeyError, TypeError) as e:
        raise StoreError(f"{where}: not an orch store marker ({e})") from None
    return Manifest(uri.rstrip("/"), fingerprint, files, int(d.get("clips", 0)))


def download(manifest: Manifest, dest: Path, progress: Progress | None = None) -> None:
    """Copy the published store's files into the directory ``dest``; StoreError if a file
    is missing or its size is not the marker's."""
    fs, base = remote_fs(manifest.uri)
    done, total = 0, manifest.size
    dest.mkdir(parents=True, exist_ok=True)
    for name, size in manifest.files.items():
        got = 0
        try:
            with fs.open_input_stream(f"{base}/{name}") as src, open(dest / name, "wb") as out:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                    got += len(chunk)
                    if progress:
                        progress(done + got, total)
                out.flush()
                os.fsync(out.fileno())
        except FileNotFoundError:
            raise StoreError(f"{manifest.uri}/{name}: missing, though {MARKER} lists it") from None
        except OSError as e:
            raise StoreError(f"{manifest.uri}/{name}: cannot download ({e})") from e
        if got != size:
            raise StoreError(f"{manifest.uri}/{name}: {got} bytes, {MARKER} says {size} (changed or damaged "
                             f"since it was published)")
        done += size


def _listing(fs: pafs.FileSystem, base: str) -> dict[str, int]:
    """Every object under ``base``, by path relative to it, with its size."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except OSError as e:
        raise StoreError(f"{base}: cannot list ({e})") from e
    return {i.path[len(base):].lstrip("/"): i.size or 0 for i in infos if i.type == pafs.FileType.File}


def publish(store: str | os.PathLike, uri: str, overwrite: bool = False, progress: Progress | None = None) -> Manifest:
    """Upload the local store ``store`` to ``uri``: its files first, the marker last (see
    the module docstring). The store is verified (content fingerprint) before anything is
    uploaded. Without ``overwrite`` a prefix that holds anything is refused; with it, only a
    prefix that holds nothing but a store's files is replaced."""
    if not is_remote(uri):
        raise ValueError(f"{uri}: publish to an s3:// or gs:// URI (a local store is used where it is)")
    src = FrameStore(store)
    src.verify()
    fs, base, present = check_destination(uri, overwrite)
    if present:
        if MARKER in present:  # first: from here on readers are refused, never served a mixture
            fs.delete_file(f"{base}/{MARKER}")
        for name in present:
            if name != MARKER:
                fs.delete_file(f"{base}/{name}")
    files = {name: (src.path / name).stat().st_size for name in STORE_FILES if (src.path / name).is_file()}
    total, done = sum(files.values()), 0
    for name, size in files.items():
        _upload(src.path / name, fs, f"{base}/{name}", lambda n, d=done: progress and progress(d + n, total))
        done += size
    marker = {"format": MARKER_FORMAT, "version": 1, "fingerprint": src.fingerprint, "clips": len(src),
              "files": [{"name": k, "size": v} for k, v in files.items()],
              "published": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with fs.open_output_stream(f"{base}/{MARKER}") as out:
        out.write(json.dumps(marker, indent=1).encode())
    return Manifest(uri.rstrip("/"), src.fingerprint, files, len(src))


def check_destination(uri: str, overwrite: bool) -> tuple[pafs.FileSystem, str, dict[str, int]]:
    """StoreError unless a store may be published at ``uri``: nothing is there, or (with
    ``overwrite``) nothing but a store's files — never a prefix holding anything else.
    Returns the filesystem, the path in it and what is there."""
    fs, base = remote_fs(uri, create_bucket=True)
    present = _listing(fs, base)
    if present and not overwrite:
        raise StoreError(f"{uri}: already holds {len(present)} objects (pass --overwrite to replace a store there)")
    shown = foreign_files(present)
    if shown:
        raise StoreError(f"{uri}: not an orch store, so --overwrite will not replace it: it holds {shown}")
    return fs, base, present


def upload_file(path: Path, uri: str) -> None:
    """One local file to ``uri`` (e.g. an ingest report beside a published store)."""
    fs, dest = remote_fs(uri, create_bucket=True)
    _upload(path, fs, dest)


def _upload(path: Path, fs: pafs.FileSystem, dest: str, progress: Callable[[int], None] | None = None) -> None:
    done = 0
    try:
        with open(path, "rb") as src, fs.open_output_stream(dest) as out:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done)
    except OSError as e:
        raise StoreError(f"{dest}: upload of {path} failed ({e})") from e
