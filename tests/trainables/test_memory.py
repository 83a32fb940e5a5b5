"""A reused worker gives its freed memory back between trials (``trainables.memory``)."""

import ctypes
import ctypes.util

import pytest

from trainables import memory, trainable


def _anon_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no RssAnon in /proc/self/status")


@pytest.mark.skipif(not ctypes.util.find_library("c"), reason="glibc only")
def test_release_returns_freed_heap_pages_that_free_keeps():
    """What a trial leaves: many heap blocks freed below one still in use. ``free`` keeps
    those pages resident; ``release`` returns them."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(64 * 1024) for _ in range(3000)]  # 192 MB below the mmap threshold: on the heap
    for b in blocks:
        ctypes.memset(b, 1, 64 * 1024)
    for b in blocks[:-1]:
        libc.free(b)
    kept = _anon_mb()
    assert memory.release() is True
    released = _anon_mb()
    libc.free(blocks[-1])
    assert kept - released > 150, (kept, released)


def test_every_trial_releases_however_it_ends(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "release", lambda: calls.append(1) or True)

    def boom(config):
        raise RuntimeError("training failed")

    monkeypatch.setattr(trainable, "_train_solo", boom)
    with pytest.raises(RuntimeError, match="training failed"):
        trainable.train_trial({"plan": {"name": "seed0-N4"}})
    monkeypatch.setattr(trainable, "_train_solo", lambda config: None)
    trainable.train_trial({"plan": {"name": "seed0-N4"}})
    assert len(calls) == 2
