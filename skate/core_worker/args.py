"""A call's arguments: packed by the caller, unpacked by the worker that runs it.

Top-level ObjectRef arguments become dependencies: the caller resolves them before the call
is sent, and the worker gets their values (inline, or the location in a shared-memory store)
in `spec.deps`. Refs nested deeper travel as refs. A large `(args, kwargs)` blob goes to the
object store as one more dependency.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from skate import _ids
from skate._config import MAX_INLINE_BYTES
from skate._serialization import KIND_ERROR, deserialize_inline, serialize
from skate.object_ref import ObjectRef
from skate.protocol.messages import INLINE, TaskSpec

ARGS_SLOT = -1  # a dependency slot holding the whole (args, kwargs) blob, when it is large
# What a call without ref arguments holds: one shared empty tuple rather than three fresh lists
# per call (168 bytes each time, kept while a million tasks wait in the owner's queues).
NO_REFS: tuple = ()


class ArgSlot:
    """Stands in for a top-level ObjectRef argument inside the pickled arguments."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index

    def __reduce__(self):
        return (ArgSlot, (self.index,))


def prepare_args(
    core: Any, spec: TaskSpec, args: tuple, kwargs: dict
) -> tuple[Sequence, Sequence, Sequence[bytes]]:
    """Serialize a call's arguments into `spec.args`; returns (dependencies, held, used ids).

    The returned refs are counted as used by the call until it finishes. A call without refs
    gets `NO_REFS` for all three (never to be mutated).
    """
    if not args and not kwargs:
        return NO_REFS, NO_REFS, NO_REFS
    dep_refs: list = []
    hold: list = []
    args, kwargs = _replace_top_level_refs(args, kwargs, dep_refs)
    try:
        sobj = serialize((args, kwargs))
    except TypeError:
        _raise_unserializable(spec.name, args, kwargs)
    hold.extend(sobj.contained_refs)
    if sobj.size < MAX_INLINE_BYTES:
        spec.args = sobj.to_inline()
    else:
        args_oid = _ids.object_id_for_put(core.current_task_id(), next(core.put_index))
        args_ref = ObjectRef(args_oid, None, core)
        core.objects.store_owned(args_oid, sobj)
        dep_refs.append((ARGS_SLOT, args_ref))
    if not hold and not dep_refs:
        return NO_REFS, NO_REFS, NO_REFS
    hold.extend(ref for _, ref in dep_refs)
    refs = [r for r in hold if type(r) is ObjectRef]
    uses = [r._id for r in refs]
    if uses:
        core.refs.add_task_uses(uses, [r._owner for r in refs])
    return dep_refs, hold, uses


def _replace_top_level_refs(args: tuple, kwargs: dict, deps: list) -> tuple[tuple, dict]:
    if any(type(a) is ObjectRef for a in args):
        new_args = []
        for a in args:
            if type(a) is ObjectRef:
                deps.append((len(deps), a))
                a = ArgSlot(len(deps) - 1)
            new_args.append(a)
        args = tuple(new_args)
    if kwargs and any(type(v) is ObjectRef for v in kwargs.values()):
        new_kwargs = {}
        for k, v in kwargs.items():
            if type(v) is ObjectRef:
                deps.append((len(deps), v))
                v = ArgSlot(len(deps) - 1)
            new_kwargs[k] = v
        kwargs = new_kwargs
    return args, kwargs


def _raise_unserializable(name: str, args: tuple, kwargs: dict):
    """Find which argument cannot be pickled and say so."""
    items = [(f"argument {i}", a) for i, a in enumerate(args)]
    items += [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
    for label, value in items:
        try:
            serialize(value)
        except TypeError as exc:
            cause = exc.__cause__ or exc
            raise TypeError(
                f"Could not serialize {label} of {name}(): {type(value).__name__} object "
                f"cannot be pickled ({cause})"
            ) from None
    raise TypeError(f"Could not serialize the arguments of {name}()")


def load_args(spec: TaskSpec, read_stored: Callable[[list], list]) -> tuple[tuple, dict]:
    """The worker's side: the call's (args, kwargs) with every dependency's value in its slot.

    `read_stored([(object_id, entry, owner), ...])` reads values held in a shared-memory store
    (owner None: the caller, who owns the argument).
    A dependency that is an error raises it.
    """
    values: dict[int, Any] = {}
    blob = None
    in_store = []
    for slot, oid, entry, owner in spec.deps:
        if entry[0] == INLINE:
            kind, value = deserialize_inline(entry[1])
            if kind == KIND_ERROR:
                raise value
            if slot == ARGS_SLOT:
                blob = value
            else:
                values[slot] = value
        else:
            in_store.append((slot, oid, tuple(entry), owner if owner is not None else spec.owner))
    if in_store:
        loaded = read_stored([item[1:] for item in in_store])
        for (slot, *_), value in zip(in_store, loaded):
            if slot == ARGS_SLOT:
                blob = value
            else:
                values[slot] = value
    if blob is None:
        blob = deserialize_inline(spec.args)[1] if spec.args is not None else ((), {})
    args, kwargs = blob
    if values:
        args = tuple(values[a.index] if type(a) is ArgSlot else a for a in args)
        kwargs = {k: values[v.index] if type(v) is ArgSlot else v for k, v in kwargs.items()}
    return args, kwargs
