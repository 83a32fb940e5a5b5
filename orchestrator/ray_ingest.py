"""Ingest on a Ray cluster: each clip is read by a Ray task (``storage.ingest.load_clip``)
on whichever node has a free CPU, and the driver writes the store.

The data root must be readable at the same path on every node (a shared filesystem, as the
cluster's ``setup_commands`` mount it); the store is written on the driver. At most
``window`` clips are in flight, so the object store holds a bounded number of decoded
clips, and results come back in the sources' order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import ray

from storage.ingest import IngestOptions, Loaded, Mapper, load_clip
from storage.sources.frames import ClipSource


def ray_map(cpus_per_clip: float = 1.0, window: int | None = None) -> Mapper:
    """A mapper for ``storage.ingest.ingest`` running ``load_clip`` as Ray tasks on the Ray
    instance this process is connected to."""

    def run(sources: list[ClipSource], opts: IngestOptions) -> Iterator[Loaded]:
        task = ray.remote(num_cpus=cpus_per_clip, max_retries=2)(load_clip)
        size = window or max(4, 4 * int(ray.cluster_resources().get("CPU", 1) / cpus_per_clip))
        opts_ref = ray.put(opts)
        todo = iter(sources)
        pending: deque = deque()
        try:
            for src in todo:
                pending.append(task.remote(src, opts_ref))
                if len(pending) >= size:
                    break
            while pending:
                got = ray.get(pending.popleft())
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(task.remote(nxt, opts_ref))
                yield got
        finally:
            for ref in pending:
                ray.cancel(ref)

    return run
