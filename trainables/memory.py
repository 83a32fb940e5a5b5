"""Giving a reused worker's memory back between trials.

Ray Tune reuses a worker process for trial after trial (``reuse_actors``). Each trial
allocates and frees its batches, activations and gradients, sized by its frame length, and
glibc's allocator keeps what was freed in its heaps, fragmented, instead of returning it:
measured on the default benchmark (``docs/PERFORMANCE.md``, *Memory*), a solo worker's
resident memory grew by about 20 MB a trial at N = 4 and 120 MB at all frames, to 2.0–2.3 GB
after 50 trials (``bench/worker_memory.py``), and ``gc.collect()`` did not stop it (nor is it needed: a trial leaves
almost no cyclic garbage, and a full collection of a worker's 0.5 million objects costs
0.15 s). ``malloc_trim(0)`` at each trial's end does, in about 20 ms: the worker then stays
below 1 GB."""

from __future__ import annotations

import ctypes
import ctypes.util

_libc = None


def _trim():
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            lib = ctypes.CDLL(name) if name else False
            _libc = lib if lib and hasattr(lib, "malloc_trim") else False
        except OSError:
            _libc = False
    return _libc.malloc_trim if _libc else None


def release() -> bool:
    """Return the allocator's free heap pages to the system (glibc; elsewhere nothing).
    Whether it did."""
    trim = _trim()
    if trim is None:
        return False
    trim(0)
    return True
