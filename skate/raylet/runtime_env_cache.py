"""The node's cache of runtime-env resources, as a state machine: events in, decisions out.

A resource is one thing an env needs on disk: an unpacked package (`pkg:<uri>`) or the site
directory of one pip/uv spec (`pip:<hash>`). Each is installed once, however many envs or
concurrent requests need it: the first `acquire` is told to INSTALL, later ones to WAIT for
that install (or get a HIT once it is READY). Holders are counted; a resource nobody holds
stays cached until the total size of READY resources passes the disk budget, then the least
recently used unheld ones are collected. A failed install is forgotten (every holder of it
failed with it), so the next request tries again: a broken env never sticks.
No I/O here; the clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

INSTALLING, READY = "installing", "ready"
# What `acquire` tells the caller to do.
INSTALL, WAIT, HIT = "install", "wait", "hit"


@dataclass
class Resource:
    key: str
    state: str = INSTALLING
    refs: int = 0
    size: int = 0
    last_used: float = 0.0


class RuntimeEnvCache:
    def __init__(self, budget_bytes: int, clock: Callable[[], float] = time.monotonic):
        self.budget = budget_bytes
        self.clock = clock
        self.resources: dict[str, Resource] = {}
        self.installs = 0  # installs started (tests and metrics: a warm env starts none)

    def acquire(self, key: str) -> str:
        """Take a hold on a resource: INSTALL it (first use), WAIT for its install, or HIT."""
        entry = self.resources.get(key)
        if entry is None:
            self.resources[key] = Resource(key, refs=1, last_used=self.clock())
            self.installs += 1
            return INSTALL
        entry.refs += 1
        entry.last_used = self.clock()
        return HIT if entry.state == READY else WAIT

    def installed(self, key: str, size: int) -> list[str]:
        """The install succeeded (`size` bytes on disk): the keys to delete now, if over budget."""
        entry = self.resources.get(key)
        if entry is None:
            return []
        entry.state = READY
        entry.size = size
        entry.last_used = self.clock()
        return self.collect()

    def failed(self, key: str) -> None:
        """The install failed: forget it, holds and all (each holder fails with it)."""
        self.resources.pop(key, None)

    def release(self, key: str) -> list[str]:
        """Drop one hold: the keys to delete now, if over budget."""
        entry = self.resources.get(key)
        if entry is None or entry.refs <= 0:
            return []
        entry.refs -= 1
        entry.last_used = self.clock()
        return self.collect()

    def used_bytes(self) -> int:
        return sum(e.size for e in self.resources.values() if e.state == READY)

    def collect(self) -> list[str]:
        """Unheld READY resources to delete, least recently used first, until within budget."""
        used = self.used_bytes()
        if used <= self.budget:
            return []
        doomed: list[str] = []
        idle = sorted(
            (e for e in self.resources.values() if e.state == READY and e.refs == 0),
            key=lambda e: (e.last_used, e.key),
        )
        for entry in idle:
            if used <= self.budget:
                break
            del self.resources[entry.key]
            used -= entry.size
            doomed.append(entry.key)
        return doomed
