"""Typed messages of the per-task path: what an owner sends a worker, and what comes back.

These are the hot messages (one of each per task), so they are `msgspec.Struct`s encoded as
msgpack arrays: positional, no key names on the wire, built without a dict. A handler that
receives one gets a plain list from the frame decoder and rebuilds it with `from_wire`.

Control-plane messages (leases, registration, object locations) stay small maps: they are
rare, and their keys make logs and captures readable.

Result entries, inside `TaskReply.returns` and `TaskSpec.deps`, have two forms:
    [INLINE, [kind, inband, buffers]]   the serialized value itself
    [IN_STORE, node_id, size]           the value is in that node's shared-memory store
"""

from __future__ import annotations

from typing import Any

import msgspec

# Where a result lives (the first item of a result entry).
INLINE = 0
IN_STORE = 1


class TaskSpec(msgspec.Struct, array_like=True):
    """One call: a task, an actor's constructor, or an actor method.

    `function` is the exported function's (or class's) content key; `method` is set for actor
    method calls. `args` holds the inline-serialized `(args, kwargs)` with top-level refs
    replaced by slots, and `deps` the resolved values of those slots:
    `[slot, object_id, result entry, owner]` (owner None: the caller owns it).
    """

    task_id: bytes
    name: str
    num_returns: int
    owner: list  # [worker_id, address] of the process that owns the results
    job_id: str | None = None
    namespace: str | None = None
    function: bytes | None = None
    method: str | None = None
    args: Any = None
    deps: list = msgspec.field(default_factory=list)
    resources: dict | None = None
    max_calls: int = 0
    runtime_env: dict | None = None
    gpus: list | None = None
    actor_id: bytes | None = None
    concurrency_group: str | None = None
    attempt: int = 0
    # [group id hex, bundle index, capture child tasks, bundles] for a call placed in a
    # placement group (what `get_current_placement_group()` answers and children inherit).
    placement_group: list | None = None
    # [mode, backpressure threshold, items the owner already has] for a generator task
    # ("streaming" or "dynamic"): its items are reported one by one (`GeneratorItem`), and a
    # retried attempt skips the items its owner already has. None for other calls.
    generator: list | None = None
    # The owner's times of this attempt for task events (`core_worker.task_events`): when it
    # was submitted, when its arguments were ready, when it was sent (NaN: not seen). The
    # worker writes them in its record of the call, so the owner records nothing per call.
    # `sent_at` None: the owner records no task events; `ready_at` None: the same as
    # `sent_at`, `submitted_at` None: the same as `ready_at` (a call pushed as it is
    # submitted costs its owner one field). Fields, not one tuple: the worker decodes floats
    # instead of a list it would turn into a tuple on every call.
    submitted_at: float | None = None
    ready_at: float | None = None
    sent_at: float | None = None
    # The owner's name for this call's function and options (a random 63-bit number, one per
    # remote function it calls): the worker's task events find the call's static info by it
    # with one comparison, instead of comparing every field that makes it. None: the worker
    # compares the fields (an actor call's row is written by its owner: it has none).
    events_key: int | None = None

    @classmethod
    def from_wire(cls, fields: list) -> TaskSpec:
        """Rebuild a spec, checking every field's type (msgspec.ValidationError if one is
        wrong): a malformed spec is refused here, not half-run by the worker's main loop.
        Costs about 0.3 us more than `cls(*fields)` per task (docs/security.md)."""
        return msgspec.convert(fields, cls)


class ActorCreation(msgspec.Struct, array_like=True):
    """How an actor's worker runs its calls, sent with the constructor's TaskSpec."""

    actor_id: bytes
    class_name: str
    actor_name: str = ""
    max_concurrency: int = 1
    concurrency_groups: dict = msgspec.field(default_factory=dict)
    is_async: bool = False
    restarts: int = 0

    @classmethod
    def from_wire(cls, fields: list) -> ActorCreation:
        return msgspec.convert(fields, cls)


class TaskReply(msgspec.Struct, array_like=True):
    """The outcome of one call, as its worker reports it to the owner.

    `returns` holds one result entry per return value; for a call that raised, each is the
    same error entry and `app_error` is set. `holder` is the worker's address when a returned
    value holds refs that worker keeps alive for the owner (freed by `release_contained`).
    `exiting` says the worker leaves after this call (max_calls reached, or exit_actor()).
    `started` (the worker's wall clock when the call began) asks the owner to write the
    call's task event row itself (`core_worker.task_events`: an actor call with events on,
    begun since the worker's last send of them); None: the worker records the call.
    """

    returns: list
    duration: float = 0.0
    app_error: bool = False
    exiting: bool = False
    holder: str | None = None
    actor_exited: bool = False
    started: float | None = None

    @classmethod
    def from_wire(cls, fields: list) -> TaskReply:
        return cls(*fields)


class GeneratorItem(msgspec.Struct, array_like=True):
    """One item a generator task yielded, reported to its owner before the task ends.

    `index` counts from 0; the item's object id is the task's return id `index + 2` (return 1
    is the task's own completion). `entry` is a result entry (inline value, or where it is
    stored). `holder` is the worker's address when the item holds refs that worker keeps
    alive for the owner. The owner ignores an index it already has (a retried attempt).
    """

    task_id: bytes
    index: int
    entry: list
    holder: str | None = None
    attempt: int = 0

    @classmethod
    def from_wire(cls, fields: list) -> GeneratorItem:
        return msgspec.convert(fields, cls)


class ErrorInfo(msgspec.Struct, array_like=True):
    """A failed request, as it crosses the wire.

    `type_name` and `message` are always there; `pickled` is the exception itself when it
    can be pickled (the receiver re-raises the same type) and `traceback` the remote one.
    """

    type_name: str
    message: str
    pickled: bytes | None = None
    traceback: str | None = None
