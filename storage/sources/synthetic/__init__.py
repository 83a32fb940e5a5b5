"""The built-in synthetic micro-expression benchmark."""

from storage.sources.synthetic.benchmark import (
    BENCHMARKS, SPLITS, SyntheticSpec, benchmark_spec, cached_store_path, ensure_store, generate, write_store,
)
from storage.sources.synthetic.expressions import DFME_CLASSES

__all__ = ["BENCHMARKS", "DFME_CLASSES", "SPLITS", "benchmark_spec", "SyntheticSpec", "cached_store_path", "ensure_store", "generate", "write_store"]
