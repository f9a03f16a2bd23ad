"""Checking a call's arguments at `.remote()`, as a direct call would, before anything is sent.

A task, an actor constructor or an actor method called with arguments its signature cannot
take fails at the call site with the TypeError `inspect.Signature.bind` gives (as Ray does),
not later in a worker. The signature is read once per function, class or method; the common
case (only positional arguments, their count in range) costs two comparisons per call.

Signatures travel with actor handles (pickled, or through the GCS as msgpack) in a compact
form: a list of `[name, kind, has_default]`, rebuilt with placeholder defaults, since a
default value itself may be neither picklable nor msgpack-able.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any

_ANY = sys.maxsize
_MAX_SHAPES = 32
_P = inspect.Parameter
_KIND = {int(kind): kind for kind in type(_P.POSITIONAL_ONLY)}  # type: ignore[attr-defined]  # the wire's ints back to kinds
_POSITIONAL = (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD)


class _Default:
    """Stands in for a parameter's default value, which the check never needs."""

    def __repr__(self) -> str:
        return "<default>"


_DEFAULT = _Default()


class ArgSpec:
    """What a callable accepts, read once.

    Calls with positional arguments only, `lo <= len(args) <= hi`, are accepted without
    further work (callers test that inline); anything else goes through `bind`, which raises
    TypeError naming the callable when the arguments do not fit.
    """

    __slots__ = ("name", "wire", "lo", "hi", "_signature", "_fits")

    def __init__(self, name: str, wire: list | None):
        self.name = name
        self.wire = wire
        self._signature: inspect.Signature | None = None
        # Whether a call binds depends only on how many positional arguments it has and which
        # keywords: shapes seen to bind skip `bind` from then on (a few, for keyword calls).
        self._fits: set[tuple] = set()
        if wire is None:  # unknown signature: accept anything
            self.lo, self.hi = 0, _ANY
            return
        lo = hi = 0
        for _, kind, has_default in wire:
            if kind in _POSITIONAL:
                hi += 1
                if not has_default:
                    lo = hi
            elif kind == _P.VAR_POSITIONAL:
                hi = _ANY
            elif kind == _P.KEYWORD_ONLY and not has_default:
                lo, hi = 1, 0  # a required keyword: a positional-only call never fits
                break
        self.lo, self.hi = lo, hi

    @classmethod
    def of(cls, fn: Callable, name: str, drop_first: bool = False) -> ArgSpec:
        """The ArgSpec of `fn` (without its first parameter, `self`, if drop_first); one that
        accepts anything if Python cannot tell the signature (a builtin, an extension type)."""
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            return cls(name, None)
        if drop_first:
            if not params or params[0].kind not in _POSITIONAL:
                return cls(name, None)  # no `self` to drop: leave the error to the call itself
            params = params[1:]
        return cls(name, [[p.name, int(p.kind), p.default is not p.empty] for p in params])

    @classmethod
    def accepting_nothing(cls, name: str) -> ArgSpec:
        return cls(name, [])

    def fits(self, args: tuple, kwargs: dict) -> bool:
        return not kwargs and self.lo <= len(args) <= self.hi

    def bind(self, args: tuple, kwargs: dict) -> None:
        """Raise TypeError if a call with these arguments could not bind."""
        if self.wire is None:
            return
        shape = (len(args), *kwargs)
        if shape in self._fits:
            return
        signature = self._signature
        if signature is None:
            empty = _P.empty
            signature = self._signature = inspect.Signature(
                [
                    inspect.Parameter(name, _KIND[kind], default=_DEFAULT if has_default else empty)
                    for name, kind, has_default in self.wire
                ]
            )
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}() {exc}") from None
        if len(self._fits) < _MAX_SHAPES:
            self._fits.add(shape)

    def check(self, args: tuple, kwargs: dict) -> None:
        if kwargs or not self.lo <= len(args) <= self.hi:
            self.bind(args, kwargs)


def init_spec(cls: type, name: str) -> ArgSpec:
    """What `cls(...)` accepts: its __init__ without `self`; a class that defines neither
    __init__ nor __new__ takes no arguments."""
    init = cls.__init__  # type: ignore[misc]
    if init is object.__init__:
        if cls.__new__ is object.__new__:  # type: ignore[comparison-overlap]
            return ArgSpec.accepting_nothing(name)
        return ArgSpec.of(cls.__new__, name, drop_first=True)
    if not inspect.isfunction(init):
        return ArgSpec(name, None)  # a slot wrapper of an extension base class
    return ArgSpec.of(init, name, drop_first=True)


def method_wire(cls: type, name: str, member: Any) -> list | None:
    """The wire form of an actor method's signature, as the caller sees it: without `self`,
    except for staticmethods; classmethods come bound already."""
    static = isinstance(inspect.getattr_static(cls, name, None), staticmethod)
    drop = inspect.isfunction(member) and not static
    return ArgSpec.of(member, name, drop_first=drop).wire
