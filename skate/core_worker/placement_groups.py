"""The placement groups this process created, and their state as the GCS pushes it.

The GCS tells a group's creator when the group is CREATED, RESCHEDULING or REMOVED
(`pg_state` notifications on the creator's GCS connection), so `wait()` and `ready()` on a
group made here cost no round trip: they wait for that news. Groups made elsewhere (a handle
that came in an argument, `get_placement_group`) are asked of the GCS instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

CREATED, REMOVED = "CREATED", "REMOVED"
_lock = threading.Lock()


class GroupTracker:
    def __init__(self, core: Any):
        self._lock = threading.Lock()
        self.states: dict[str, str] = {}
        self.events: dict[str, threading.Event] = {}
        self.callbacks: dict[str, list[Callable[[str], None]]] = {}
        core.handlers["pg_state"] = self._on_state

    @classmethod
    def of(cls, core: Any) -> GroupTracker:
        """The tracker of `core`, made (and its handler registered) on first use."""
        tracker = getattr(core, "_pg_tracker", None)
        if tracker is None:
            with _lock:
                tracker = getattr(core, "_pg_tracker", None)
                if tracker is None:
                    tracker = core._pg_tracker = cls(core)
        return tracker

    def track(self, pg_id: str) -> None:
        """Call before asking the GCS to create the group, so no news of it is missed."""
        with self._lock:
            self.states[pg_id] = "PENDING"
            self.events[pg_id] = threading.Event()

    def _on_state(self, conn: Any, p: dict) -> None:
        """I/O thread: the GCS's news of a group made here."""
        pg_id, state = p["pg_id"], p["state"]
        with self._lock:
            event = self.events.get(pg_id)
            if event is None:
                return
            self.states[pg_id] = state
            if state in (CREATED, REMOVED):
                event.set()
                callbacks = self.callbacks.pop(pg_id, [])
            else:
                event.clear()
                callbacks = []
            if state == REMOVED:
                self.events.pop(pg_id, None)
                self.states.pop(pg_id, None)
        for callback in callbacks:
            callback(state)

    def wait(self, pg_id: str, timeout: float | None) -> bool | None:
        """True once created, False if removed or after `timeout`; None for a group not made here."""
        with self._lock:
            event = self.events.get(pg_id)
        if event is None:
            return None
        event.wait(timeout)
        with self._lock:
            return self.states.get(pg_id) == CREATED

    def on_settled(self, pg_id: str, callback: Callable[[str], None]) -> bool:
        """I/O thread: call `callback(state)` once the group is created or removed (at once if it
        is). False for a group not made here."""
        with self._lock:
            state = self.states.get(pg_id)
            if state is None:
                return False
            if state not in (CREATED, REMOVED):
                self.callbacks.setdefault(pg_id, []).append(callback)
                return True
        callback(state)
        return True

    def removed(self, pg_id: str) -> None:
        """This process removed the group: whoever waits for it learns so now."""
        self._on_state(None, {"pg_id": pg_id, "state": REMOVED})
