"""Worker leases of one owner, per scheduling key: a state machine with no I/O.

Tasks of one scheduling key (function, resource shape, strategy) wait in a queue. The pool
decides when to ask the raylet for another lease, which leased worker a task goes to, how
many tasks a worker holds at once (functions whose recent runs were short are pipelined up to
`max_in_flight` deep, others go one at a time so a slow task never hides a fast one behind
it), and when an idle lease goes back (after `idle_seconds`, on the injected clock).

The I/O loop drives it, with one exception: a user thread may take an idle lease for a task
of its own (`claim`) and push the task itself, saving the loop's wake-up (a sync task's
latency). A claim and the loop's decisions to give a lease up or drop it (`idle_expired`,
`release`, `idle_leases`, `connection_lost`, `push_refused`) run under one lock, so a claim
never meets a lease half-returned. The loop's hot path (enqueue, dispatch, finished) takes no
lock: a claim racing it at worst adds one task to a worker that the loop also fills (one
more in flight than `max_in_flight`), or overtakes a task being queued (tasks keep no order).

Every method returns the actions for the I/O shell to carry out, as tuples:
    (PUSH, lease, entry)          send the task to the leased worker
    (REQUEST, key_state, rid)     ask for a lease (rid counts as pending from now on)
    (CANCEL_REQUEST, rid)         the queue emptied: that lease request is not needed
    (IDLE_CHECK, lease, delay)    call `idle_expired(lease)` after `delay` seconds
    (RETURN, lease, kill)         give the lease back to the raylet that granted it (kill:
                                  False, True, or RETIRE)
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from skate._config import (
    IDLE_LEASE_SECONDS,
    MAX_PENDING_LEASE_REQUESTS,
    MAX_TASKS_IN_FLIGHT_PER_WORKER,
    SHORT_TASK_SECONDS,
)

PUSH, REQUEST, CANCEL_REQUEST, IDLE_CHECK, RETURN = range(5)
RETIRE = "retire"  # a RETURN's `kill` for a worker that leaves on its own account (max_calls)


def _locked(method: Callable) -> Callable:
    """Run a LeasePool method under the pool's lock."""

    @functools.wraps(method)
    def run(self: LeasePool, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return run


class Lease:
    """A worker leased from a raylet for one scheduling key."""

    __slots__ = (
        "lease_id",
        "worker_id",
        "address",
        "conn",
        "inflight",
        "idle_since",
        "idle_timer",
        "key",
        "dead",
        "oom",
        "raylet",
        "gpu_ids",
    )

    def __init__(self, lease_id: int, worker_id: str, address: str, conn: Any, key: KeyState):
        self.lease_id = lease_id
        self.worker_id = worker_id
        self.address = address
        self.conn = conn  # the connection to the worker (opaque here)
        self.key = key
        self.inflight: dict[bytes, Any] = {}
        self.idle_since: float | None = None
        self.idle_timer: Any = None  # the shell's timer for the idle check (opaque here)
        self.dead = False
        self.oom: float | None = None  # the memory threshold, once the raylet killed it for memory
        self.raylet: Any = None  # the raylet that granted it (maybe another node's)
        self.gpu_ids: list[int] = []


class KeyState:
    """Queue, leases and pending lease requests of one scheduling key."""

    __slots__ = (
        "queue",
        "leases",
        "pending_requests",
        "duration",
        "shape",
        "strategy",
        "affinity",
        "labels",
        "runtime_env",
        "removed",
    )

    def __init__(self, shape: dict, strategy: Any = None):
        self.shape = shape
        # "SPREAD", or a node affinity {"node_id", "soft"}; None is the default strategy
        self.strategy = strategy if isinstance(strategy, str) else None
        self.affinity = strategy if isinstance(strategy, dict) else None
        self.labels: Any = None  # a node-label constraint (skate._labels wire form), or None
        self.queue: deque = deque()
        # Entries taken out of the queue (cancelled) but still in the deque: skipped when
        # reached, and dropped all at once when they are half of it (see remove_queued).
        self.removed: set = set()
        self.leases: dict[str, Lease] = {}  # by worker id (lease ids are per raylet)
        self.pending_requests: set[int] = set()
        self.duration: float | None = None  # moving average of run time
        self.runtime_env: dict | None = None  # the resolved env its workers run in (opaque here)


class LeasePool:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        idle_seconds: float = IDLE_LEASE_SECONDS,
        max_in_flight: int = MAX_TASKS_IN_FLIGHT_PER_WORKER,
        short_task_seconds: float = SHORT_TASK_SECONDS,
        max_pending_requests: int = MAX_PENDING_LEASE_REQUESTS,
    ):
        self.clock = clock
        self.idle_seconds = idle_seconds
        self.max_in_flight = max_in_flight
        self.short_task_seconds = short_task_seconds
        self.max_pending_requests = max_pending_requests
        self.keys: dict[Any, KeyState] = {}
        self._rids = itertools.count(1)
        # Reentrant: methods call each other. Held briefly (no I/O here), so the loop never
        # waits long for a claiming thread, nor it for the loop.
        self._lock = threading.RLock()

    def key_state(self, key: Any, shape: dict, strategy: Any) -> KeyState:
        ks = self.keys.get(key)
        if ks is None:
            ks = self.keys[key] = KeyState(shape, strategy)
        return ks

    # -- a user thread's own push -------------------------------------------------------
    def claim(self, ks: KeyState, entry: Any) -> Lease | None:
        """Any thread: an idle lease of `ks`, taken for `entry` now, or None (none is idle,
        or tasks of the key wait in its queue). The caller sends the task itself; if it
        cannot, it gives the lease back with `unclaim`."""
        if ks.queue:
            return None
        leases = list(ks.leases.values())  # (a copy: the loop may add one meanwhile)
        for lease in leases:  # a look without the lock first: in a burst, all are busy
            if not lease.inflight and not lease.dead:
                break
        else:
            return None
        with self._lock:
            for lease in leases:
                if not lease.inflight and not lease.dead:
                    lease.inflight[entry.task_id] = entry
                    lease.idle_since = None
                    entry.lease = lease
                    return lease
        return None

    @_locked
    def unclaim(self, lease: Lease, entry: Any) -> None:
        """A claimed lease's task was not sent: its worker's connection closed meanwhile, so
        the lease is gone (as in `push_refused`; the task goes the loop's way instead)."""
        lease.inflight.pop(entry.task_id, None)
        entry.lease = None
        lease.dead = True
        lease.key.leases.pop(lease.worker_id, None)

    # -- tasks in ---------------------------------------------------------------------
    def enqueue(self, ks: KeyState, entry: Any) -> list[tuple]:
        if ks.removed and entry in ks.removed:  # queued again (rebuilt): its old place must go
            self._compact(ks)
        ks.queue.append(entry)
        return self.dispatch(ks)

    def requeue_front(self, ks: KeyState, entry: Any) -> None:
        ks.queue.appendleft(entry)

    def remove_queued(self, ks: KeyState, entry: Any) -> None:
        """Take a queued task out of the queue (it was cancelled).

        In O(1): searching the deque made cancelling n queued tasks O(n^2) (40,000 cancelled
        newest first took 14 s). The entry stays in the deque, marked, until it is reached or
        the marked ones are half the queue, when they are all dropped in one pass (amortized
        O(1) each); so the queue never holds more than twice its live tasks. Marking an entry
        that is not queued is harmless: it is forgotten at the next compaction or when the
        queue empties.
        """
        ks.removed.add(entry)
        if 2 * len(ks.removed) >= len(ks.queue):
            self._compact(ks)

    @staticmethod
    def _compact(ks: KeyState) -> None:
        removed, queue = ks.removed, ks.queue
        kept = [e for e in queue if e not in removed]
        queue.clear()  # in place: the deque object stays the key's queue
        queue.extend(kept)
        removed.clear()

    def depth(self, ks: KeyState) -> int:
        if ks.duration is not None and ks.duration < self.short_task_seconds:
            return self.max_in_flight
        return 1

    def dispatch(self, ks: KeyState) -> list[tuple]:
        """Hand queued tasks to leased workers with room; ask for more leases while tasks wait."""
        actions: list[tuple] = []
        queue = ks.queue
        removed = ks.removed
        if removed:
            while queue and queue[0] in removed:  # so a queue of removed tasks asks for no lease
                removed.discard(queue.popleft())
            if not queue:
                removed.clear()
        if queue:
            depth = self.depth(ks)
            for lease in list(ks.leases.values()):
                while queue and len(lease.inflight) < depth and not lease.dead:
                    entry = queue.popleft()
                    if removed and entry in removed:
                        removed.discard(entry)
                        continue
                    if entry.done:
                        continue
                    lease.inflight[entry.task_id] = entry
                    lease.idle_since = None
                    entry.lease = lease
                    actions.append((PUSH, lease, entry))
        if queue:
            room = min(len(queue), self.max_pending_requests) - len(ks.pending_requests)
            for _ in range(room):
                rid = next(self._rids)
                ks.pending_requests.add(rid)  # counted now, so the next dispatch does not ask again
                actions.append((REQUEST, ks, rid))
        elif ks.pending_requests:
            for rid in list(ks.pending_requests):
                actions.append((CANCEL_REQUEST, rid))
        for lease in ks.leases.values():
            if not lease.inflight and lease.idle_since is None and not lease.dead:
                lease.idle_since = self.clock()
                actions.append((IDLE_CHECK, lease, self.idle_seconds))
        return actions

    # -- leases -----------------------------------------------------------------------
    def granted(self, ks: KeyState, rid: int, lease: Lease | None) -> list[tuple]:
        """A lease request ended: with a lease, or None when it was refused or redirected."""
        ks.pending_requests.discard(rid)
        if lease is not None:
            ks.leases[lease.worker_id] = lease
        return self.dispatch(ks)

    def request_failed(self, ks: KeyState, rid: int, fatal: bool = False) -> tuple[list[tuple], list]:
        """A lease request failed for good. Returns (actions, tasks to fail). `fatal`: the
        failure holds for every task of the key (its runtime env cannot be set up), so the
        queued ones fail now rather than ask again."""
        ks.pending_requests.discard(rid)
        if (ks.pending_requests or ks.leases) and not fatal:
            return self.dispatch(ks), []  # other requests may still succeed
        failed = [e for e in ks.queue if not e.done and e not in ks.removed]
        ks.queue.clear()
        ks.removed.clear()
        return [], failed

    @_locked
    def idle_expired(self, lease: Lease) -> list[tuple]:
        """The idle timer of a lease fired: return it if it stayed idle all along."""
        if lease.dead or lease.inflight or lease.idle_since is None:
            return []
        if self.clock() - lease.idle_since + 1e-9 < self.idle_seconds:
            return [(IDLE_CHECK, lease, self.idle_seconds - (self.clock() - lease.idle_since))]
        return self.release(lease, kill=False)

    @_locked
    def release(self, lease: Lease, kill: bool | str) -> list[tuple]:
        """Give the lease back; with `kill` its worker goes too (RETIRE: it asked to leave,
        so it may send its last task events first)."""
        if lease.dead:
            return []
        lease.dead = True
        lease.idle_since = None
        lease.key.leases.pop(lease.worker_id, None)
        return [(RETURN, lease, kill)]

    @_locked
    def idle_leases(self) -> list[tuple]:
        """The raylet wants resources back: return every lease with nothing in flight."""
        actions: list[tuple] = []
        for ks in self.keys.values():
            for lease in list(ks.leases.values()):
                if not lease.inflight:
                    actions += self.release(lease, kill=False)
        return actions

    # -- results ----------------------------------------------------------------------
    def finished(self, lease: Lease, entry: Any, duration: float | None) -> None:
        """A task left its worker (a reply came); its run time tunes the pipelining depth."""
        lease.inflight.pop(entry.task_id, None)
        entry.lease = None
        if duration is not None:
            ks = lease.key
            ks.duration = duration if ks.duration is None else 0.8 * ks.duration + 0.2 * duration
        if not lease.inflight:
            lease.idle_since = None  # re-armed by the next dispatch

    def lease_failed(self, lease: Lease, entry: Any) -> list[tuple]:
        """The worker died or its connection broke while `entry` ran there.

        The worker may still be alive (an error reply): its lease is returned with kill.
        """
        lease.inflight.pop(entry.task_id, None)
        entry.lease = None
        return self.release(lease, kill=True)

    @_locked
    def push_refused(self, lease: Lease, entry: Any) -> None:
        """The worker went away while idle: not the task's failure; it goes first in line again."""
        lease.inflight.pop(entry.task_id, None)
        entry.lease = None
        lease.dead = True
        lease.key.leases.pop(lease.worker_id, None)
        lease.key.queue.appendleft(entry)

    @_locked
    def connection_lost(self, conn: Any) -> list[KeyState]:
        """A worker's connection closed: its idle leases are gone (busy ones fail their tasks).

        Returns the keys with queued tasks, to dispatch again.
        """
        again = []
        for ks in self.keys.values():
            for lease in list(ks.leases.values()):
                if lease.conn is conn and not lease.inflight:
                    lease.dead = True
                    lease.idle_since = None
                    ks.leases.pop(lease.worker_id, None)
            if ks.queue:
                again.append(ks)
        return again

    def mark_oom(self, worker_id: str, threshold: float) -> None:
        """The raylet is about to kill this worker for memory: its failure is an OOM."""
        for ks in self.keys.values():
            lease = ks.leases.get(worker_id)
            if lease is not None:
                lease.oom = threshold
