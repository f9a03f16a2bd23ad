"""`skate.types`: names for type annotations, as `ray.types`.

`ObjectRef[int]` annotates a reference to an int. Ray's `ray.types.ObjectRef` is a generic
placeholder for annotations only; Skate's also answers isinstance() for real references, so
`isinstance(skate.put(1), skate.types.ObjectRef)` is True.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from skate.object_ref import ObjectRef as _ObjectRef

T = TypeVar("T")


class _RefMeta(type):
    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, _ObjectRef) or type.__instancecheck__(cls, obj)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, _ObjectRef) or type.__subclasscheck__(cls, sub)


class ObjectRef(Generic[T], metaclass=_RefMeta):
    """A reference to an object of type T (for annotations; create refs with put or remote)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("skate.types.ObjectRef is for annotations; get a reference from put() or .remote()")


__all__ = ["ObjectRef"]
