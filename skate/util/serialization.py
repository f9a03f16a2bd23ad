"""Custom serializers for a class (Ray's `ray.util.register_serializer`).

As in Ray, a registration is local to the process that makes it: it applies to every object
this process serializes from then on (arguments and `put` in a driver; results and `put` in
a worker or actor). The deserializer is carried inside each serialized object, so the
process that reads it needs no registration. To change how workers serialize (their return
values), register in the worker, e.g. in an actor's constructor or a task. Lookup is by exact
class, as pickle's dispatch table is: subclasses are not covered by their base's serializer.
"""

from __future__ import annotations

from collections.abc import Callable

from skate._serialization import register_reducer, unregister_reducer


def register_serializer(cls: type, *, serializer: Callable, deserializer: Callable) -> None:
    """Serialize instances of `cls` as `serializer(obj)` (which must itself be serializable)
    and rebuild them with `deserializer(that)`, in this process from now on."""
    register_reducer(cls, serializer, deserializer)


def deregister_serializer(cls: type) -> None:
    """Stop using the custom serializer of `cls` in this process; no effect if there is none."""
    if not isinstance(cls, type):
        raise TypeError(f"deregister_serializer: cls must be a class, got {type(cls).__name__} {cls!r}")
    unregister_reducer(cls)


__all__ = ["deregister_serializer", "register_serializer"]
