"""Per-call state: which task is running here, in this thread or coroutine.

A worker may run several calls at once (a threaded actor on a pool, an async actor as
coroutines), so what belongs to one call lives in a `ContextVar`, never on a shared object:
each pool thread and each coroutine sees its own call. The driver, outside any call, sees
None.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True, eq=False)
class CallContext:
    """What is known about the call running in this context."""

    task_id: bytes
    name: str
    actor_call: bool = False  # a method of an actor (or its constructor)
    cancelled: bool = False  # cancel() reached it while it ran
    resources: dict = field(default_factory=dict)
    placement_group: list | None = None  # TaskSpec.placement_group of the call (or its actor)
    began: float = 0.0  # when it started running, by time.perf_counter() (0: not yet)
    spec: Any = None  # its TaskSpec (what a task event of it running names it by)


_current: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar("skate_call", default=None)

current_call = _current.get


def enter(call: CallContext) -> contextvars.Token:
    """Make `call` the current one; pass the token to `leave` when it ends."""
    return _current.set(call)


def leave(token: contextvars.Token) -> None:
    _current.reset(token)


def current_task_name() -> str | None:
    call = _current.get()
    return call.name if call is not None else None
