"""Which code makes a trial's numbers, so that a FINISHED run is reused only when the code
that made it is the code that would make it again.

- ``code_digest()``: sha256 over the ``.py`` source of the packages that compute the numbers
  (``storage``, ``trainables``: frames, sampling, tokens, model, training, metrics), read
  from the installed package directories (so it works without git, on any worker), plus
  the versions of torch and numpy. It is part of a trial's identity
  (``tracking.TrialRun.open``). The orchestrator, the CLI, reports and docs are left out:
  changing them does not change a number.
- ``code_version()``: the digest with what a run records about its code: the project's
  version (``importlib.metadata``), the git commit of the checkout and whether its tracked
  files differ from it (``unknown`` without git), and the versions of torch, ray, mlflow
  and numpy. Computed once, in the driver (cluster workers may have no git), and passed to
  every trial in its config.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import subprocess
from pathlib import Path

DIGEST_PACKAGES = ("storage", "trainables")  # the packages whose source makes the numbers
DIGEST_LIBRARIES = ("torch", "numpy")  # libraries whose version can change a number
RECORDED_LIBRARIES = ("torch", "ray", "mlflow", "numpy")
UNKNOWN = "unknown"


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"code digest: package {name!r} not found")
    return Path(list(spec.submodule_search_locations)[0])


def source_digest(packages: tuple[str, ...] = DIGEST_PACKAGES) -> str:
    """sha256 over every ``.py`` file of ``packages``: relative path and content, in a fixed order."""
    h = hashlib.sha256()
    for name in packages:
        root = package_dir(name)
        for f in sorted(root.rglob("*.py")):
            rel = f.relative_to(root.parent).as_posix()
            h.update(rel.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def library_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN


@functools.lru_cache(maxsize=None)
def code_digest() -> str:
    """The identity of the code that computes a trial's numbers (16 hex digits)."""
    h = hashlib.sha256(source_digest().encode())
    for lib in DIGEST_LIBRARIES:
        h.update(f"\0{lib}={library_version(lib)}".encode())
    return h.hexdigest()[:16]


def git_state(where: Path) -> tuple[str, str]:
    """(commit, dirty) of the git checkout holding ``where``: dirty is ``true`` when tracked
    files differ from the commit; ``unknown`` for both without git or outside a checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=20,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = "true" if git("status", "--porcelain", "--untracked-files=no") else "false"
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN, UNKNOWN
    return commit, dirty


def code_version() -> dict[str, str]:
    """What a run records about the code that made it (MLflow params ``code.*``)."""
    commit, dirty = git_state(package_dir(DIGEST_PACKAGES[0]).parent)
    return {"digest": code_digest(), "version": library_version("orch"), "git_commit": commit,
            "git_dirty": dirty, **{lib: library_version(lib) for lib in RECORDED_LIBRARIES}}
