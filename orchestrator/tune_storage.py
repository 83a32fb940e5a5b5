"""Where Ray Tune keeps a sweep's results and checkpoints (``--storage URI``), and the
stable name of a sweep's Tune experiment there.

The storage is a local (or NFS-mounted) directory, a ``file://`` URI, or an ``s3://`` /
``gs://`` URI (pyarrow filesystems; credentials and ``AWS_ENDPOINT_URL`` from the usual
environment; query options such as ``?allow_bucket_creation=true`` pass through to
pyarrow). On a cluster of real machines it must be storage every node reaches — a shared
filesystem or a bucket — since each trial writes its checkpoints from its own node (Ray
Tune refuses nothing here; a node-local path only works where the nodes share a disk).

A sweep's Tune experiment is named ``{experiment}-{identity}``: the identity is a digest
of everything the trials receive (the Tune ``param_space`` — plans, trial config, tracking
URI and MLflow experiment, code digest, search space), so the same command finds its own
interrupted Tune experiment again and a different sweep never restores it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from storage.location import REMOTE_SCHEMES


class StorageError(ValueError):
    """``--storage`` names nothing Ray Tune can write to; the message says why."""


@dataclass(frozen=True)
class TuneStorage:
    uri: str  # as given (or the default directory), for messages and the resume index
    path: str  # Ray's storage_path: a local absolute path, or the path inside ``filesystem``
    filesystem: pafs.FileSystem | None = None  # None: the local filesystem

    @classmethod
    def resolve(cls, uri: str | None, default: Path, create: bool = True) -> "TuneStorage":
        """``uri`` (a path, ``file://``, ``s3://``, ``gs://``) or, if empty, ``default``;
        with ``create`` the directory (or bucket prefix) is made, so that a storage Tune
        cannot write to fails here, named, before any trial starts."""
        text = str(uri or default)
        scheme = urlparse(text).scheme
        if scheme in ("", "file") or (len(scheme) == 1 and text[1:3] in (":\\", ":/")):  # a path (or C:\)
            local = Path(urlparse(text).path if scheme == "file" else text).expanduser().resolve()
            if create:
                try:
                    local.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise StorageError(f"--storage {text}: cannot create the directory ({e})") from None
            return cls(str(local), str(local), None)
        if scheme not in REMOTE_SCHEMES:
            raise StorageError(f"--storage {text}: scheme {scheme!r} is not supported; use a path, file://, "
                               f"s3:// or gs://")
        try:
            fs, path = pafs.FileSystem.from_uri(text)
        except Exception as e:  # pyarrow's ArrowInvalid / OSError name the problem
            raise StorageError(f"--storage {text}: {e}") from None
        path = path.rstrip("/")
        if create:
            try:
                fs.create_dir(path, recursive=True)
            except Exception as e:
                raise StorageError(f"--storage {text}: cannot write there ({e})") from None
        return cls(text, path, fs)

    @property
    def is_local(self) -> bool:
        return self.filesystem is None

    def run_config(self) -> dict:
        """``RunConfig`` keyword arguments."""
        return {"storage_path": self.path, "storage_filesystem": self.filesystem}

    def experiment_path(self, name: str) -> str:
        """The Tune experiment ``name``'s directory, as ``Tuner.restore`` takes it (with
        ``storage_filesystem=self.filesystem``)."""
        return (Path(self.path) / name).as_posix() if self.is_local else f"{self.path}/{name}"

    def experiment_uri(self, name: str) -> str:
        """The same directory, written for people (the scheme kept)."""
        if self.is_local:
            return self.experiment_path(name)
        base = self.uri.split("?", 1)[0].rstrip("/")
        return f"{base}/{name}"

    def remove_experiment(self, name: str) -> None:
        fs = self.filesystem or pafs.LocalFileSystem()
        fs.delete_dir(self.experiment_path(name))


def tune_name(experiment: str, param_space: dict) -> str:
    """The Tune experiment of a sweep: the experiment's name and a digest of what its
    trials receive (``identity``)."""
    return f"{experiment}-{identity(param_space)}"


def identity(param_space: dict) -> str:
    """A digest of a Tune ``param_space``: plain values as JSON, Tune search domains by
    their class and attributes (never by object address). Of the code version only the
    digest counts: a new git commit that changes no number (docs, the orchestrator) is
    the same sweep."""
    space = dict(param_space)
    if isinstance(space.get("code"), dict):
        space["code"] = space["code"].get("digest", "")
    text = json.dumps(_canonical(space), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _canonical(value):
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "__dict__"):  # a Tune domain (Float, Categorical, ...) and its sampler
        return {"__class__": type(value).__qualname__,
                **{k: _canonical(v) for k, v in sorted(vars(value).items()) if not k.startswith("_")}}
    return repr(value)
