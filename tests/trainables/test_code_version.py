"""The code version a run records, and the digest that is part of a trial's identity."""

import importlib.metadata
import subprocess

import pytest

from trainables import code_version as cv


def test_code_version_records_project_git_and_libraries():
    v = cv.code_version()
    assert set(v) == {"digest", "version", "git_commit", "git_dirty", "torch", "ray", "mlflow", "numpy"}
    assert v["digest"] == cv.code_digest() and len(v["digest"]) == 16
    assert v["version"] == importlib.metadata.version("orch")
    for lib in ("torch", "ray", "mlflow", "numpy"):
        assert v[lib] == importlib.metadata.version(lib)
    assert v["git_dirty"] in ("true", "false", "unknown")


def test_digest_follows_the_source_and_the_numeric_libraries(tmp_path, monkeypatch):
    pkg = tmp_path / "fakepkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "m.py").write_text("x = 1\n")
    (pkg / "notes.txt").write_text("not code")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = cv.source_digest(("fakepkg",))
    assert cv.source_digest(("fakepkg",)) == first
    (pkg / "notes.txt").write_text("still not code")
    assert cv.source_digest(("fakepkg",)) == first
    (pkg / "sub" / "m.py").write_text("x = 2\n")
    assert cv.source_digest(("fakepkg",)) != first

    cv.code_digest.cache_clear()
    base = cv.code_digest()
    real = cv.library_version
    monkeypatch.setattr(cv, "library_version", lambda n: "0.0.0" if n == "numpy" else real(n))
    cv.code_digest.cache_clear()
    try:
        assert cv.code_digest() != base
    finally:
        monkeypatch.setattr(cv, "library_version", real)
        cv.code_digest.cache_clear()
    assert cv.code_digest() == base


def test_git_state_clean_dirty_and_outside_a_checkout(tmp_path):
    assert cv.git_state(tmp_path) == ("unknown", "unknown")
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*a):
        return subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True, text=True).stdout.strip()

    try:
        git("init", "-q")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no git")
    (repo / "f.py").write_text("a\n")
    git("add", "f.py")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "c")
    commit = git("rev-parse", "HEAD")
    assert cv.git_state(repo) == (commit, "false")
    (repo / "untracked.txt").write_text("x")  # untracked files do not make it dirty
    assert cv.git_state(repo) == (commit, "false")
    (repo / "f.py").write_text("b\n")
    assert cv.git_state(repo) == (commit, "true")
