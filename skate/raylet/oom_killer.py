"""The raylet's out-of-memory killer: the I/O side of `raylet.memory_monitor`.

Every CHECK_INTERVAL_S it shows the monitor the node's leased workers; when memory use is over
the threshold the monitor names a victim (the newest task's worker), whose owner is told why
before the worker is killed, so the task fails as OutOfMemoryError rather than as a crash.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from skate.raylet.memory_monitor import CHECK_INTERVAL_S, LeaseView, MemoryMonitor

logger = logging.getLogger("skate.raylet")


async def monitor_memory(raylet: Any) -> None:
    """Kill the newest task's worker when the node runs out of memory (see memory_monitor)."""
    monitor = MemoryMonitor()
    while not raylet._stopping:
        await asyncio.sleep(CHECK_INTERVAL_S)
        leases = [
            LeaseView(w.lease_id, w.worker_id, w.owner, w.owner == "gcs")
            for w in raylet.scheduler.workers.values()
            if w.lease_id is not None and w.owner
        ]
        try:
            victim = monitor.choose_victim(leases)
        except Exception:
            logger.exception("memory monitor failed")
            continue
        if victim is None:
            continue
        logger.warning(
            "memory usage above %.0f%%: killing worker %s (newest task lease %d)",
            monitor.threshold * 100,
            victim.worker_id[:8],
            victim.lease_id,
        )
        owner = raylet.clients.get(victim.owner)
        if owner is not None:
            # The owner learns why before the worker's connection breaks (it waits for the
            # answer), so the task fails as OutOfMemoryError, not as a crash.
            try:
                await asyncio.wait_for(
                    owner.call("oom_killed", {"worker_id": victim.worker_id, "threshold": monitor.threshold}),
                    1.0,
                )
            except Exception:
                pass
        raylet.kill_worker(victim.worker_id)
