"""Finding what makes an object unpicklable (Ray's `ray.util.inspect_serializability`).

A function is looked into through the globals and nonlocals it uses; any other object
through its attributes (functions first). The culprits are the deepest objects that fail to
pickle while everything they hold pickles (or where `depth` runs out), each reported with the
path of names that leads to it. The walk is printed as an indented tree.
"""

from __future__ import annotations

import inspect
from typing import IO, Any

import cloudpickle

_RULE = 80


class FailureTuple:
    """One object that could not be pickled: the object, its name, the object holding it,
    and the path of names from the inspected object down to it."""

    __slots__ = ("obj", "name", "parent", "path")

    def __init__(self, obj: Any, name: str | None, parent: Any, path: tuple = ()):
        self.obj = obj
        self.name = name
        self.parent = parent
        self.path = path

    def _key(self) -> tuple:
        return (id(self.obj), self.name, self.path)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FailureTuple) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        path = " -> ".join(str(p) for p in self.path) or "<top>"
        return f"FailTuple({self.name} [obj={self.obj!r}, parent={self.parent!r}, path={path}])"


class _Printer:
    def __init__(self, file: IO | None):
        self.file = file
        self.level = 0

    def line(self, text: str) -> None:
        print("    " * self.level + text, file=self.file)


def _pickle_error(obj: Any) -> Exception | None:
    try:
        cloudpickle.dumps(obj)
        return None
    except Exception as exc:
        return exc


def _children(obj: Any) -> list[tuple[str, Any]]:
    """What an object holds that pickling it must pickle too, as (name, value)."""
    if inspect.isfunction(obj):
        try:
            closure = inspect.getclosurevars(obj)
        except (TypeError, ValueError):
            return []
        return list(closure.globals.items()) + list(closure.nonlocals.items())
    try:
        members = inspect.getmembers(obj)
    except Exception:
        return []
    functions = [(n, v) for n, v in members if inspect.isfunction(v)]
    others = [
        (n, v)
        for n, v in members
        if not (n.startswith("__") and n.endswith("__"))
        and not inspect.isbuiltin(v)
        and not inspect.isfunction(v)
    ]
    return functions + others


def _walk(
    obj: Any, name: str | None, parent: Any, depth: int, path: tuple, failures: set, out: _Printer
) -> bool:
    """Whether obj pickles; adds the culprits under it to `failures` when it does not."""
    error = _pickle_error(obj)
    if error is None:
        return True
    out.line(f"!!! FAIL serialization: {error}")
    found_below = False
    if depth > 0:
        kids = _children(obj)
        kind = "global/nonlocal variables" if inspect.isfunction(obj) else "attributes"
        if kids:
            out.line(f"Detected {len(kids)} {kind}. Checking serializability...")
        out.level += 1
        for child_name, child in kids:
            if child is obj:
                continue
            out.line(f"Serializing {child_name!r} {_short(child)}...")
            if not _walk(child, child_name, obj, depth - 1, path + (child_name,), failures, out):
                found_below = True
                break
        out.level -= 1
        if not found_below:
            out.line(f"WARNING: nothing inside {_short(obj)} failed on its own; it is the culprit.")
    if not found_below:
        failures.add(FailureTuple(obj, name, parent, path))
    return False


def _short(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 100 else text[:97] + "..."


def inspect_serializability(
    base_obj: Any, name: str | None = None, depth: int = 3, print_file: IO | None = None
) -> tuple[bool, set[FailureTuple]]:
    """(True, set()) if base_obj pickles; else (False, the objects that prevent it).

    depth bounds how far into closures and attributes the search goes; the tree of what was
    tried is printed to print_file (stdout by default)."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be a non-negative int, got {depth!r}")
    out = _Printer(print_file)
    title = f"Checking Serializability of {_short(base_obj)}"
    out.line("=" * min(len(title), _RULE))
    out.line(title)
    out.line("=" * min(len(title), _RULE))
    failures: set[FailureTuple] = set()
    ok = _walk(base_obj, name, None, depth, (name,) if name is not None else (), failures, out)
    out.line("=" * min(len(title), _RULE))
    if ok:
        out.line("Serialization succeeded.")
    else:
        out.line("Variable(s) found to be non-serializable:")
        for failure in failures:
            out.line(f"    {failure}")
        out.line(
            "There may be other non-serializable variables not found. Consider creating these "
            "objects inside the function or class that uses them, instead of capturing them."
        )
    out.line("=" * min(len(title), _RULE))
    return ok, failures
