"""The built-in synthetic micro-expression benchmark."""

from storage.sources.synthetic.benchmark import (
    SPLITS, SyntheticSpec, cached_store_path, ensure_store, generate, write_store,
)
from storage.sources.synthetic.expressions import DFME_CLASSES

__all__ = ["DFME_CLASSES", "SPLITS", "SyntheticSpec", "cached_store_path", "ensure_store", "generate", "write_store"]
