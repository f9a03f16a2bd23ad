"""The garbage collector's settings in Skate's processes.

CPython's cyclic collector runs a young collection every 700 net new container objects and,
now and then, a full one that walks every object alive. A core worker moves many short-lived
containers per call (specs, refs, futures), so on the hot paths those collections cost as much
as the calls' own work (docs/benchmarks.md). Two well-known remedies, applied once a process has
finished starting:

- `gc.freeze()`: everything alive at that point (imported modules, Skate's own tables) moves to
  the permanent generation, which no collection walks again. A forked worker also keeps the
  zygote's pages shared, as the collector no longer writes to those objects.
- In Skate's own processes (GCS, raylet, workers) a young collection every 10,000 new objects
  instead of 700: fewer, larger collections, the same garbage freed.

A driver is the user's process: it only freezes what exists when `init()` returns and keeps the
user's thresholds. `SKATE_GC_TUNING=0` leaves the collector alone everywhere.
"""

from __future__ import annotations

import gc
import os

YOUNG_THRESHOLD = 10_000


def enabled() -> bool:
    return os.environ.get("SKATE_GC_TUNING", "1") != "0"


def tune(own_process: bool) -> None:
    """Freeze what is alive now; in one of Skate's own processes, also collect the young
    generation less often (never lowering a threshold someone raised)."""
    if not enabled():
        return
    gc.freeze()
    if own_process:
        first, second, third = gc.get_threshold()
        if 0 < first < YOUNG_THRESHOLD:
            gc.set_threshold(YOUNG_THRESHOLD, second, third)
