"""The owner's record of the tasks it submitted: a state machine with no I/O.

For normal tasks and actor calls alike it decides what happens at each step of a task's
life, and the I/O shells (`submitter`, `actor_submitter`) carry the decisions out:

    submitted -> resolving arguments -> ready -> running -> finished
                        |                          |   \\-> retried (back to ready)
                        \\-> failed (a dependency)  \\-> failed / cancelled

- Dependencies: `resolve` turns the values of a call's ref arguments into its `deps`, or
  fails the call with the error of a dependency that failed.
- Retries: an application error is retried under `retry_exceptions`; a lost worker or actor
  within `max_retries` / `max_task_retries` (-1: forever).
- Lineage: a finished task whose results live in a shared-memory store is kept, with its
  arguments pinned, while its results are referenced, so a lost result can be rebuilt by
  running it again. Kept specs are bounded by `max_lineage_bytes` (Ray's default, 1 GiB):
  past it the oldest are evicted and a rebuild of their results fails saying so.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Sequence
from typing import Any

from skate import _ids
from skate._serialization import deserialize_inline
from skate.exceptions import (
    ActorDiedError,
    ObjectLostError,
    ObjectReconstructionFailedLineageEvictedError,
    ObjectReconstructionFailedMaxAttemptsExceededError,
    OutOfMemoryError,
    RaySystemError,
    RayTaskError,
    TaskCancelledError,
    WorkerCrashedError,
)
from skate.protocol.messages import IN_STORE, INLINE, TaskReply, TaskSpec

logger = logging.getLogger(__name__)

MAX_LINEAGE_BYTES = 1 << 30
KIND_ERROR = 1  # the serialization kind of an error value (see skate._serialization)


def _any_stored(returns: list) -> bool:
    for r in returns:  # a loop, not any(genexpr): this runs for every finished task
        if r[0] == IN_STORE:
            return True
    return False


def is_put_id(object_id: bytes) -> bool:
    """Whether an object was made by put() rather than returned by a task."""
    return len(object_id) == 20 and bool(object_id[19] & 0x80)


class TaskEntry:
    """One submitted call, as its owner tracks it until it finishes (and while its lineage lives)."""

    __slots__ = (
        "spec",
        "task_id",
        "return_ids",
        "uses",
        "retries_left",
        "retry_exceptions",
        "key",
        "dep_refs",
        "hold",
        "cancelled",
        "force",
        "lease",
        "done",
        "resolved",
        "seq",
        "strategy",
        "on_ready",
        "lineage_bytes",
        "ev_args",
        "ev_ready",
        "ev_reported",
        "actor_state",
        "events",
    )

    def __init__(
        self,
        spec: TaskSpec,
        return_ids: list[bytes],
        uses: Sequence[bytes],
        retries_left: int,
        retry_exceptions: Any,
        key: Any,
        dep_refs: Sequence,
        hold: Sequence,
    ):
        self.spec = spec
        self.task_id = spec.task_id
        self.return_ids = return_ids
        self.uses = uses  # object ids counted as used by this task (its arguments)
        self.retries_left = retries_left
        self.retry_exceptions = retry_exceptions
        self.key = key  # scheduling key of a normal task; None for actor calls
        self.dep_refs: Sequence | None = dep_refs  # (slot, ObjectRef) pairs to resolve before running
        self.hold: Sequence | None = hold  # objects kept alive while the task is pending
        self.cancelled = False
        self.force = False
        self.lease: Any = None  # where it runs now (a Lease), None while queued
        self.done = False
        self.resolved = False
        self.seq = 0  # submission order, for actor calls
        self.strategy: Any = None
        self.on_ready: Callable[[TaskEntry], None] | None = None  # set for actor calls
        self.lineage_bytes = 0
        # Its task event while it waits (core_worker.task_events): when it was submitted (0:
        # not recorded) and its arguments ready, and whether it was reported in flight; once
        # sent, its spec carries them (`TaskSpec.submitted_at`...). Slots: no container per call.
        self.ev_args = 0.0
        self.ev_ready: float | None = None
        self.ev_reported = False
        # The owner's task event buffer for this call, or None: its events are off (the
        # process's, or `enable_task_events=False`); set by the submitter.
        self.events: Any = None
        self.actor_state: Any = None  # an actor call's ActorState, counted there when it ends

    @property
    def name(self) -> str:
        return self.spec.name


class Retry:
    """Run the task again (its retries_left already counts this attempt)."""

    __slots__ = ()


class Complete:
    """The task finished; store these results."""

    __slots__ = ("returns", "holder")

    def __init__(self, returns: list, holder: str | None):
        self.returns = returns
        self.holder = holder


class Fail:
    """The task failed for good with this error."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException):
        self.error = error


RETRY = Retry()
Outcome = Retry | Complete | Fail


class TaskManager:
    """Pending tasks and the lineage of finished ones, keyed by task id."""

    def __init__(self, max_lineage_bytes: int = MAX_LINEAGE_BYTES):
        self.pending: dict[bytes, TaskEntry] = {}
        self.lineage: collections.OrderedDict[bytes, TaskEntry] = collections.OrderedDict()
        self.lineage_bytes = 0
        self.max_lineage_bytes = max_lineage_bytes
        self.evicted: set[bytes] = set()  # tasks whose lineage went over the budget
        self._unpinned: collections.deque[TaskEntry] = collections.deque()

    # -- submission and dependencies --------------------------------------------------
    def add(self, entry: TaskEntry) -> None:
        self.pending[entry.task_id] = entry

    def missing_dependencies(self, entry: TaskEntry, have: Callable[[bytes], bool]) -> list[bytes]:
        """Ids of the call's ref arguments not known yet, each once."""
        return [oid for oid in dict.fromkeys(ref._id for _, ref in entry.dep_refs or ()) if not have(oid)]

    def resolve(self, entry: TaskEntry, lookup: Callable[[bytes], tuple | None]) -> Fail | tuple | None:
        """Fill the call's `deps` from its arguments' entries.

        Returns None when the call is ready, the error entry of a dependency that failed (the
        call fails with the same error), or a Fail if an argument vanished.
        """
        deps = []
        for slot, ref in entry.dep_refs or ():
            value = lookup(ref._id)
            if value is None:  # cannot happen while the task holds it
                return Fail(RaySystemError(f"argument {ref.hex()} of {entry.name} vanished"))
            if value[0] == INLINE and value[1][0] == KIND_ERROR:
                return value
            deps.append([slot, ref._id, list(value), ref._owner])
        entry.spec.deps = deps
        entry.resolved = True
        return None

    # -- outcomes ---------------------------------------------------------------------
    def on_reply(self, entry: TaskEntry, reply: TaskReply) -> Outcome:
        """The worker answered: a result, or an application error that may be retried."""
        if reply.app_error and not entry.cancelled and self.should_retry_exception(entry, reply.returns[0]):
            if entry.retries_left > 0:
                entry.retries_left -= 1
            entry.spec.attempt += 1
            return RETRY
        return Complete(reply.returns, reply.holder)

    @staticmethod
    def should_retry_exception(entry: TaskEntry, ret: list) -> bool:
        if not entry.retry_exceptions or entry.retries_left == 0:
            return False
        if entry.retry_exceptions is True:
            return True
        try:
            _, err = deserialize_inline(ret[1])
            cause = err.cause if isinstance(err, RayTaskError) else err
            return isinstance(cause, tuple(entry.retry_exceptions))
        except Exception:
            return False

    def on_worker_lost(
        self, entry: TaskEntry, reason: str, worker_id: str, oom_threshold: float | None
    ) -> Retry | Fail:
        """The worker running a normal task died or its connection broke."""
        if entry.cancelled:
            return Fail(TaskCancelledError(f"Task {entry.name} was cancelled."))
        if oom_threshold is not None and entry.retries_left == 0:
            return Fail(
                OutOfMemoryError(
                    f"Task {entry.name} was killed because its node's memory use went above "
                    f"{oom_threshold:.0%} (the newest task is killed first), and no retries were left. "
                    "Use less memory per task, run fewer at once (num_cpus or memory=...), or "
                    "raise max_retries."
                )
            )
        if entry.retries_left != 0:
            if entry.retries_left > 0:
                entry.retries_left -= 1
            entry.spec.attempt += 1
            logger.info("retrying task %s after worker failure: %s", entry.name, reason)
            return RETRY
        return Fail(
            WorkerCrashedError(
                f"The worker running task {entry.name} died unexpectedly "
                f"(worker {worker_id[:8]}): {reason}. It was not retried: no retries were left."
            )
        )

    def on_actor_lost(self, entry: TaskEntry, actor_name: str, actor_id: bytes) -> Retry | Fail:
        """The connection to the actor broke while the call was in flight."""
        if entry.cancelled:
            return Fail(TaskCancelledError(f"Task {entry.name} was cancelled."))
        if entry.retries_left != 0:
            if entry.retries_left > 0:
                entry.retries_left -= 1
            entry.spec.attempt += 1
            return RETRY
        return Fail(
            ActorDiedError(
                f"The actor {actor_name} ({actor_id.hex()}) died while running this call "
                f"({entry.name}); it was not retried (max_task_retries=0).",
                actor_id.hex(),
            )
        )

    def finish(
        self, entry: TaskEntry, returns: list | None, referenced: Callable[[bytes], bool]
    ) -> Sequence[bytes]:
        """The task is over. Returns the object ids whose use by it ends now.

        A finished task that may run again to rebuild a lost result (retries left, results in
        a shared-memory store, still referenced) enters the lineage and keeps its arguments
        pinned until its results are freed or the lineage budget evicts it.
        """
        entry.done = True
        self.pending.pop(entry.task_id, None)
        entry.dep_refs = None
        if (
            returns is not None
            and entry.retries_left != 0
            and entry.key is not None
            and _any_stored(returns)
            and any(referenced(oid) for oid in entry.return_ids)
        ):
            self._keep_lineage(entry)
            return []
        entry.hold = None
        return entry.uses

    def _keep_lineage(self, entry: TaskEntry) -> None:
        spec = entry.spec
        size = 200 + (len(spec.args[1]) if spec.args else 0) + sum(len(repr(d)) for d in spec.deps)
        entry.lineage_bytes = size
        self.lineage[entry.task_id] = entry
        self.lineage_bytes += size
        while self.lineage_bytes > self.max_lineage_bytes and self.lineage:
            _, old = self.lineage.popitem(last=False)
            self.lineage_bytes -= old.lineage_bytes
            self.evicted.add(old.task_id)
            self._unpinned.append(old)

    def has_unpinned(self) -> bool:
        return bool(self._unpinned)

    def take_unpinned(self) -> list[bytes]:
        """Object ids whose pin by evicted or dropped lineage ends now."""
        out: list[bytes] = []
        while self._unpinned:
            entry = self._unpinned.popleft()
            entry.hold = None
            out.extend(entry.uses)
        return out

    def drop_lineage(self, object_id: bytes, referenced: Callable[[bytes], bool]) -> Sequence[bytes]:
        """A result was freed: forget its task once none of its results is referenced.

        Returns the object ids its pinned arguments release.
        """
        tid = _ids.task_id_of(object_id)
        entry = self.lineage.get(tid)
        if entry is None or any(referenced(oid) for oid in entry.return_ids):
            return []
        del self.lineage[tid]
        self.lineage_bytes -= entry.lineage_bytes
        entry.hold = None
        return entry.uses

    def reconstruct(self, object_id: bytes) -> TaskEntry:
        """The finished task that made a lost object, ready to run again.

        Raises the error the reader gets when it cannot be rebuilt.
        """
        tid = _ids.task_id_of(object_id)
        entry = None if is_put_id(object_id) else self.lineage.get(tid)
        if entry is None:
            if is_put_id(object_id):
                raise ObjectLostError(
                    f"Object {object_id.hex()} was lost: every copy is gone (its node may have died) and "
                    "it was created by put(), so it cannot be rebuilt.",
                    object_id.hex(),
                )
            if tid in self.evicted:
                raise ObjectReconstructionFailedLineageEvictedError(
                    f"Object {object_id.hex()} was lost and cannot be rebuilt: the lineage of the task "
                    f"that made it was evicted to stay under max_lineage_bytes ({self.max_lineage_bytes}).",
                    object_id.hex(),
                )
            raise ObjectLostError(
                f"Object {object_id.hex()} was lost: every copy is gone (its node may have died) and "
                "the task that made it cannot run again.",
                object_id.hex(),
            )
        if entry.retries_left == 0:
            raise ObjectReconstructionFailedMaxAttemptsExceededError(
                f"Object {object_id.hex()} was lost and its task {entry.name} has no retries left "
                "to rebuild it.",
                object_id.hex(),
            )
        del self.lineage[tid]
        self.lineage_bytes -= entry.lineage_bytes
        if entry.retries_left > 0:
            entry.retries_left -= 1
        entry.spec.attempt += 1
        entry.done = False
        entry.lease = None
        entry.cancelled = False
        self.pending[tid] = entry
        return entry

    # -- cancellation -----------------------------------------------------------------
    def cancel(self, object_id: bytes, force: bool) -> TaskEntry | None:
        """Mark the pending task that makes `object_id` (or whose id it is: an object id starts
        with its task's id) cancelled; None if it is not pending."""
        entry = self.pending.get(_ids.task_id_of(object_id))
        if entry is None or entry.done:
            return None
        entry.cancelled = True
        entry.force = force
        return entry

    def cancelled_error(self, entry: TaskEntry) -> TaskCancelledError:
        return TaskCancelledError(f"Task {entry.name} was cancelled.")
