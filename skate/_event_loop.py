"""The event loop Skate's own threads and processes run on: uvloop where it is installed.

Every I/O loop of Skate's (a core worker's I/O thread, the GCS, the raylet, the client, the
dashboard) is created here. uvloop runs the same asyncio programs with its loop, transports
and timers in C (libuv): a wake-up, a socket read or a write costs a fraction of the
pure-Python loop's, which is most of what a synchronous call pays (docs/benchmarks.md).
`SKATE_EVENT_LOOP=asyncio` chooses the standard loop (a comparison, or a platform uvloop
does not support); an async actor's own loop, which runs user code, is always asyncio's.
"""

from __future__ import annotations

import asyncio
import os
from types import ModuleType

uvloop: ModuleType | None
try:
    import uvloop
except ImportError:  # optional: the standard loop does everything, only slower
    uvloop = None


def kind() -> str:
    """ "uvloop" or "asyncio": what `new_event_loop` makes in this process."""
    wanted = os.environ.get("SKATE_EVENT_LOOP", "uvloop")
    if wanted not in ("uvloop", "asyncio"):
        raise ValueError(f"SKATE_EVENT_LOOP must be 'uvloop' or 'asyncio', got {wanted!r}")
    return "uvloop" if uvloop is not None and wanted == "uvloop" else "asyncio"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop of `kind()`, not yet set as the thread's current one."""
    if kind() == "uvloop":
        return uvloop.new_event_loop()  # type: ignore[union-attr]
    return asyncio.new_event_loop()
