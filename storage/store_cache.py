"""A node-local cache of remote stores, keyed by fingerprint: each node fetches a store
once, every process on it memory-maps the same verified copy.

Root: ``$ORCH_STORE_CACHE`` or ``~/.cache/orch/stores``. A ``{node}`` in it is replaced by
the node's name the caller gives (the trainable passes Ray's node id), so nodes that share
one disk — ``ray.cluster_utils`` clusters on one machine — still keep one cache each. Its
bound: ``$ORCH_STORE_CACHE_BYTES`` (``50G``, ``800M``, or bytes; default 100G)::

    ROOT/<fingerprint>/          a verified copy (clips.arrow, frames.arrow, features.arrow)
    ROOT/<fingerprint>.lock      held (exclusive) while the store is fetched or evicted
    ROOT/<fingerprint>.use       held (shared) by every process that has the store open;
                                 its modification time is when the store was last opened
    ROOT/.tmp-<fingerprint>-*    a fetch under way (renamed into place when verified)
    ROOT/fetches.log             one JSON line per fetch (what, when, bytes, seconds, pid)

``open_cached(uri)``: read the published marker (``storage.location``); under the store's
lock, fetch it unless a copy is there — into a temporary directory, every file's size
checked against the marker, the content fingerprint recomputed and compared with the
marker's (``FrameStore.verify``), then renamed into place; so two processes on a node fetch
it once, and what is in the cache is complete and verified. Then the oldest-used stores
beyond the bound are evicted, never one that a process holds open or the one just opened.
Locks are ``fcntl.flock`` locks: released by the kernel when a process dies.

Imports neither Ray nor MLflow.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from storage.location import Manifest, Progress, download, is_remote, local_path, read_manifest
from storage.store import FrameStore, StoreError

CACHE_ENV = "ORCH_STORE_CACHE"
LIMIT_ENV = "ORCH_STORE_CACHE_BYTES"
DEFAULT_ROOT = "~/.cache/orch/stores"
DEFAULT_LIMIT = 100 * 2**30
FETCHES_LOG = "fetches.log"
_ENTRY = re.compile(r"^[0-9a-f]{64}$")
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}

Log = Callable[[str], None]


def cache_root(node: str | None = None) -> Path:
    """The cache directory: ``$ORCH_STORE_CACHE`` (``{node}`` replaced by ``node``, or by
    this host's name when none is given) or ``~/.cache/orch/stores``."""
    raw = os.environ.get(CACHE_ENV) or DEFAULT_ROOT
    return Path(raw.replace("{node}", node or socket.gethostname())).expanduser()


def cache_limit() -> int:
    """``$ORCH_STORE_CACHE_BYTES`` in bytes (``50G``, ``800M``, ``1024``), default 100 GiB."""
    raw = os.environ.get(LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_LIMIT
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", raw, re.IGNORECASE)
    if not m:
        raise ValueError(f"${LIMIT_ENV}: {raw!r} is not a size (bytes, or a number with K, M, G or T)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


@dataclass
class CachedStore:
    """A store opened from the cache. ``lease`` is the shared lock that keeps the copy from
    being evicted while this process maps it: keep the object as long as the store."""

    store: FrameStore
    path: Path
    fetched: bool  # this call downloaded it (else it was in the cache)
    manifest: Manifest
    seconds: float = 0.0
    evicted: list[str] = field(default_factory=list)  # fingerprints evicted after it was opened
    lease: int | None = None  # the file descriptor holding the shared lock

    def close(self) -> None:
        if self.lease is not None:
            os.close(self.lease)
            self.lease = None


class StoreCache:
    """The cache at ``root``, holding at most ``limit`` bytes of stores not in use."""

    def __init__(self, root: Path, limit: int | None = None):
        self.root = Path(root)
        self.limit = cache_limit() if limit is None else int(limit)

    @classmethod
    def for_node(cls, node: str | None = None) -> "StoreCache":
        return cls(cache_root(node))

    # -- opening ------------------------------------------------------------------------
    def open(self, uri: str, progress: Progress | None = None, log: Log | None = None) -> CachedStore:
        """The store published at ``uri``, fetched into the cache unless it is there."""
        say = log or (lambda _msg: None)
        manifest = read_manifest(uri)
        fp = manifest.fingerprint
        self.root.mkdir(parents=True, exist_ok=True)
        dest = self.root / fp
        t0 = time.time()
        fetched = False
        with _locked(self.root / f"{fp}.lock"):
            if not dest.is_dir():
                say(f"store {uri} ({fp[:12]}, {_mib(manifest.size)}): fetching into the node's cache {self.root}")
                self._fetch(manifest, dest, progress)
                fetched = True
            lease = os.open(self.root / f"{fp}.use", os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(lease, fcntl.LOCK_SH)
            os.utime(self.root / f"{fp}.use")
        try:
            store = FrameStore(dest)
            if store.fingerprint != fp:
                raise StoreError(f"{dest}: cached copy has fingerprint {store.fingerprint[:12]}, {uri} is {fp[:12]}; "
                                 f"remove {dest} to have it fetched again")
        except BaseException:
            os.close(lease)
            raise
        seconds = time.time() - t0
        if fetched:
            self._record(manifest, seconds)
            say(f"store {uri} ({fp[:12]}): fetched and verified in {seconds:.1f} s; cached at {dest}")
        else:
            say(f"store {uri} ({fp[:12]}): cached at {dest}")
        evicted = self.evict(keep={fp}, log=say)
        return CachedStore(store, dest, fetched, manifest, seconds, evicted, lease)

    def _fetch(self, manifest: Manifest, dest: Path, progress: Progress | None) -> None:
        fp = manifest.fingerprint
        for stale in self.root.glob(f".tmp-{fp}-*"):  # left by a fetcher that died (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = self.root / f".tmp-{fp}-{uuid.uuid4().hex[:8]}"
        try:
            download(manifest, tmp, progress)
            copy = FrameStore(tmp)
            if copy.fingerprint != fp:
                raise StoreError(f"{manifest.uri}: its clips.arrow records fingerprint {copy.fingerprint[:12]}, "
                                 f"its marker {fp[:12]}: not the store that was published")
            try:
                copy.verify()
            except StoreError as e:
                raise StoreError(f"{manifest.uri}: the downloaded content does not match its fingerprint "
                                 f"(damaged or changed since it was published): {e}") from None
            del copy
            os.rename(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _record(self, manifest: Manifest, seconds: float) -> None:
        line = json.dumps({"fingerprint": manifest.fingerprint, "uri": manifest.uri, "bytes": manifest.size,
                           "seconds": round(seconds, 3), "pid": os.getpid(), "host": socket.gethostname(),
                           "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
        with open(self.root / FETCHES_LOG, "a") as f:
            f.write(line + "\n")

    # -- bounding -----------------------------------------------------------------------
    def entries(self) -> list[tuple[str, int, float]]:
        """The cached stores: (fingerprint, bytes, last opened), least recently used first."""
        out = []
        if not self.root.is_dir():
            return out
        for d in self.root.iterdir():
            if d.is_dir() and _ENTRY.match(d.name):
                try:  # another process may be evicting it right now (it renames, then removes)
                    size = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
                    use = self.root / f"{d.name}.use"
                    out.append((d.name, size, use.stat().st_mtime if use.exists() else d.stat().st_mtime))
                except FileNotFoundError:
                    continue
        return sorted(out, key=lambda e: e[2])

    def evict(self, keep: set[str] = frozenset(), log: Log | None = None) -> list[str]:
        """Remove least-recently-used stores until the cache fits its limit; a store in use
        (some process holds it open) or in ``keep`` stays. Returns the fingerprints removed."""
        say = log or (lambda _msg: None)
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        removed = []
        for fp, size, _ in entries:
            if total <= self.limit:
                break
            if fp in keep or not self._remove_unused(fp):
                continue
            total -= size
            removed.append(fp)
            say(f"store cache {self.root}: evicted {fp[:12]} ({_mib(size)}, least recently used)")
        if total > self.limit:
            say(f"store cache {self.root}: {_mib(total)} in use or just opened, over its limit of "
                f"{_mib(self.limit)} (${LIMIT_ENV})")
        return removed

    def _remove_unused(self, fp: str) -> bool:
        try:
            lock = _try_lock(self.root / f"{fp}.lock")
        except BlockingIOError:
            return False  # being fetched or evicted by another process
        try:
            use = os.open(self.root / f"{fp}.use", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(use, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a process has it open
            finally:
                os.close(use)
            gone = self.root / f".evict-{fp}-{uuid.uuid4().hex[:8]}"
            os.rename(self.root / fp, gone)  # no longer a store the moment it is renamed
            shutil.rmtree(gone, ignore_errors=True)
            return True
        finally:
            os.close(lock)


def open_store(location: str, node: str | None = None, progress: Progress | None = None,
               log: Log | None = None) -> tuple[FrameStore, CachedStore | None]:
    """A store wherever it is: a local path or ``file://`` URI opened in place, a remote URI
    from the node's cache (``node`` fills ``{node}`` in ``$ORCH_STORE_CACHE``). The second
    value, for a remote store, holds the lease that keeps its copy: keep it with the store."""
    if not is_remote(location):
        return FrameStore(local_path(location)), None
    cached = StoreCache.for_node(node).open(location, progress=progress, log=log)
    return cached.store, cached


class _locked:
    """An exclusive ``flock`` on ``path`` for the ``with`` block (waits for it)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> int:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self.fd

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def _try_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
