"""The node memory monitor: kill the newest retriable task before the kernel's OOM killer acts.

A decision function with injected readings (no I/O of its own), so tests need no real
memory pressure: given the node's used fraction and the running task leases, it names the
worker to kill, if any. Actors are left alone; among tasks the most recently granted lease
goes first, since it has done the least work.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import psutil

DEFAULT_THRESHOLD = float(os.environ.get("SKATE_MEMORY_USAGE_THRESHOLD", "0.95"))
CHECK_INTERVAL_S = float(os.environ.get("SKATE_MEMORY_MONITOR_INTERVAL_S", "0.25"))


@dataclass
class LeaseView:
    lease_id: int
    worker_id: str
    owner: str
    is_actor: bool


def used_fraction() -> float:
    mem = psutil.virtual_memory()
    return 1.0 - mem.available / mem.total


class MemoryMonitor:
    def __init__(self, threshold: float = DEFAULT_THRESHOLD, reader: Callable[[], float] = used_fraction):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"memory usage threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.reader = reader
        self.kills = 0

    def choose_victim(self, leases: list[LeaseView]) -> LeaseView | None:
        """The task lease to kill now, or None when memory is fine or nothing may be killed."""
        usage = self.reader()
        if usage < self.threshold:
            return None
        tasks = [lease for lease in leases if not lease.is_actor]
        if not tasks:
            return None
        self.kills += 1
        return max(tasks, key=lambda lease: lease.lease_id)
