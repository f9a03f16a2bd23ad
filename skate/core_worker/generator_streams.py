"""The owner's side of generator tasks: item reports in, ObjectRefs out to the consumer.

A generator task (`TaskSpec.generator` set) has one ordinary return, its completion (return
id 1: None, or the task's error). Each item it yields is reported by its worker as it goes
(`report_generator_item`, a `GeneratorItem`) on the connection its call came on, so the
reports arrive before the task's reply, in order. Item `i` is the object `task id + (i + 2)`,
owned here like any return: inline in the memory store, or in a node's shared memory.

Decisions live in `generator_state.GeneratorState` (duplicates, the consumer's position, the
end, the backpressure window); a `Stream` guards one with a lock and carries them out: it
holds a ref to every item not yet taken (so an item is freed once the consumer drops the ref
it got, while the task still runs), wakes blocked and async consumers, and holds the reply to
a report while the producer must wait for the consumer. The submitters call `on_task_end` with
the task's final result, which ends the stream (and, for `num_returns="dynamic"`, turns the
items into the DynamicObjectRefGenerator that becomes the task's one result).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from skate import _ids
from skate._serialization import serialize
from skate.core_worker.errors import is_error_entry
from skate.core_worker.generator_state import DROP, END, ERROR, ITEM, KEEP, WAIT, GeneratorState
from skate.exceptions import GetTimeoutError
from skate.object_ref import ObjectRef
from skate.object_ref_generator import DynamicObjectRefGenerator, ObjectRefGenerator
from skate.protocol.connection import Connection
from skate.protocol.messages import INLINE, GeneratorItem

STREAMING = "streaming"
DYNAMIC = "dynamic"


def item_id(task_id: bytes, index: int) -> bytes:
    """The object id of a generator task's index-th item (return 1 is the task's completion)."""
    return _ids.object_id_for_return(task_id, index + 2)


class Stream:
    """One generator task's items, shared by the I/O thread (reports) and the consumer."""

    def __init__(self, core: Any, task_id: bytes, mode: str, threshold: int, actor_call: bool = False):
        self.core = core
        self.task_id = task_id
        self.mode = mode
        self.actor_call = actor_call  # an actor method's stream: cancel(force=True) is refused
        self.state = GeneratorState(threshold)
        self.cond = threading.Condition(threading.RLock())  # reentrant: abandon() may run in __del__
        self.refs: dict[int, ObjectRef] = {}  # received items not yet taken
        self.waiters: list[Callable[[], None]] = []  # async consumers to wake
        self.held: dict[int, asyncio.Future] = {}  # report replies held back (I/O thread)

    # -- I/O thread -------------------------------------------------------------------------
    def add_item(self, item: GeneratorItem) -> Any:
        """Record a reported item; the reply to the report (the consumer's position), or a
        future of it when the producer must wait for the consumer."""
        core = self.core
        oid = item_id(self.task_id, item.index)
        with self.cond:
            action = self.state.on_item(item.index)
            if action == KEEP:
                ref = ObjectRef(oid, None, core)
                _store(core, oid, item)
                self.refs[item.index] = ref
                self._wake()
            elif action == DROP:
                _drop(core, oid, item)
            if self.state.may_ack(item.index):
                return self.state.consumed
            self.state.hold(item.index)
            fut = core.loop.create_future()
            self.held[item.index] = fut
            return fut

    def end(self, failed: bool) -> None:
        with self.cond:
            self.state.on_end(failed)
            self._wake()
        self.release_acks()

    def release_acks(self) -> None:
        """I/O thread: answer the held reports the consumer's progress lets go."""
        with self.cond:
            ready = self.state.releasable()
            consumed = self.state.consumed
        for index in ready:
            fut = self.held.pop(index, None)
            if fut is not None and not fut.done():
                fut.set_result(consumed)

    def _wake(self) -> None:
        """Under the lock: wake blocked consumers and async ones."""
        self.cond.notify_all()
        waiters, self.waiters = self.waiters, []
        for wake in waiters:
            wake()

    # -- consumer (user threads) ----------------------------------------------------------------
    def next_ref(self, timeout: float | None) -> ObjectRef:
        """The next item's ref, waiting as needed; StopIteration at the end."""
        with self.cond:
            kind, index = self.state.take()
            if kind == WAIT:
                deadline = None if timeout is None else time.monotonic() + timeout
                blocked = self.core.block()
                try:
                    while kind == WAIT:
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            raise GetTimeoutError(
                                f"the next item of generator task {self.task_id.hex()} did not come "
                                f"within {timeout} s"
                            )
                        self.cond.wait(remaining)
                        kind, index = self.state.take()
                finally:
                    if blocked:
                        self.core.unblock()
            return self._hand_out(kind, index)

    def try_next(self) -> ObjectRef | None:
        """The next item's ref if there is one now, None if it must wait; StopIteration at the end."""
        with self.cond:
            kind, index = self.state.take()
            return None if kind == WAIT else self._hand_out(kind, index)

    def _hand_out(self, kind: str, index: int) -> ObjectRef:
        if self.state.held:
            self.core.post(self.release_acks)
        if kind == ITEM:
            return self.refs.pop(index)
        if kind == ERROR:  # the task's completion holds its error
            return ObjectRef(_ids.object_id_for_return(self.task_id, 1), None, self.core)
        assert kind == END
        raise StopIteration

    def on_ready(self, wake: Callable[[], None]) -> bool:
        """Call `wake` (from any thread) once next() would not wait; False if it would not now."""
        with self.cond:
            if self.state.ready():
                return False
            self.waiters.append(wake)
            return True

    def off_ready(self, wake: Callable[[], None]) -> None:
        """Forget a `wake` given to on_ready that is no longer wanted (a wait that timed out)."""
        with self.cond:
            try:
                self.waiters.remove(wake)
            except ValueError:
                pass  # it already ran

    def ready(self) -> bool:
        with self.cond:
            return self.state.ready()

    def next_item_id(self) -> bytes | None:
        """The object id next() would hand out if it is an item that has arrived, else None."""
        with self.cond:
            state = self.state
            return item_id(self.task_id, state.consumed) if state.consumed < state.available else None

    def finished(self) -> bool:
        with self.cond:
            return self.state.finished()

    def abandon(self) -> None:
        """The consumer dropped its generator: free the items it never took, let the producer go."""
        core = self.core
        with self.cond:
            untaken = [self.refs.pop(i) for i in self.state.abandon() if i in self.refs]
            held = bool(self.state.held)
        if held and not core.stopped:
            core.post(self.release_acks)
        del untaken  # their ObjectRefs go: the objects are freed like any unreferenced result


class GeneratorStreams:
    """The streams of the generator tasks this process submitted, by task id."""

    def __init__(self, core: Any):
        self.core = core
        self.streams: dict[bytes, Stream] = {}
        self._fresh: dict[bytes, Stream] = {}  # registered, not yet handed to the caller
        core.handlers["report_generator_item"] = self._h_report

    # -- submission (user thread) ---------------------------------------------------------------
    def register(self, task_id: bytes, generator: list, actor_call: bool = False) -> Stream:
        """Before the task is posted: its reports may come as soon as it runs."""
        stream = Stream(self.core, task_id, generator[0], generator[1], actor_call)
        self.streams[task_id] = stream
        self._fresh[task_id] = stream
        return stream

    def consumer(self, completion: ObjectRef) -> Any:
        """What `.remote()` returns: an ObjectRefGenerator, or for "dynamic" the one ref."""
        stream = self._fresh.pop(completion.task_id())
        if stream.mode == DYNAMIC:
            return completion
        return ObjectRefGenerator(completion, stream)

    # -- I/O thread ---------------------------------------------------------------------------
    def received(self, task_id: bytes) -> int:
        """How many items of the task arrived in order: a retried attempt starts after them."""
        stream = self.streams.get(task_id)
        if stream is None:
            return 0
        with stream.cond:
            return stream.state.available

    def _h_report(self, conn: Connection, fields: list) -> Any:
        item = GeneratorItem.from_wire(fields)
        stream = self.streams.get(item.task_id)
        if stream is None:  # the task has ended: nobody will take it
            oid = item_id(item.task_id, item.index)
            if not self.core.refs.has(oid):
                _drop(self.core, oid, item)
            return None
        return stream.add_item(item)

    def on_task_end(self, task_id: bytes, returns: list) -> list:
        """The task is over for good (its reply, or its failure): end its stream.

        Returns what to store as the task's results: unchanged for a streaming task (its
        completion), the DynamicObjectRefGenerator of its items for a dynamic one.
        """
        stream = self.streams.pop(task_id, None)
        if stream is None:
            return returns
        failed = is_error_entry(returns[0])
        if stream.mode != DYNAMIC:
            stream.end(failed)
            return returns
        core = self.core
        with stream.cond:
            stream.state.on_end(False)
            refs = [stream.refs.pop(i) for i in range(stream.state.available) if i in stream.refs]
            if failed:  # as Ray: the error is one more ref, after the items
                oid = item_id(task_id, stream.state.available)
                refs.append(ObjectRef(oid, None, core))
                core.store.put(oid, tuple(returns[0]))
        sobj = serialize(DynamicObjectRefGenerator(refs))
        completion = _ids.object_id_for_return(task_id, 1)
        core.ownership.contained[completion] = list(sobj.contained_refs)
        return [[INLINE, sobj.to_inline()]]


def _store(core: Any, oid: bytes, item: GeneratorItem) -> None:
    if item.holder is not None:
        core.ownership.remote_contained[oid] = item.holder  # told to let go when we free the item
    core.store.put(oid, tuple(item.entry))


def _drop(core: Any, oid: bytes, item: GeneratorItem) -> None:
    """Free an item nobody will take (in shared memory, or holding refs on its worker)."""
    _store(core, oid, item)
    core.ownership.on_ref_zero(oid, None)
