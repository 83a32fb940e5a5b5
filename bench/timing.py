"""Timing shared by the benchmarks: the best of a few runs, after one to warm the caches."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(fn: Callable, arg, repeat: int) -> float:
    """Seconds of the fastest of ``repeat`` calls ``fn(arg)``, after one warm-up call."""
    fn(arg)  # warm the page cache
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - t)
    return min(times)
