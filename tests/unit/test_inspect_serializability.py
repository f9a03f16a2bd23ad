"""skate.util.inspect_serializability finds the object that makes another unpicklable."""

from __future__ import annotations

import io
import sys
import threading

import cloudpickle
import pytest

import skate.util
from skate.util import inspect_serializability
from skate.util.check_serialize import FailureTuple

pytestmark = pytest.mark.timeout(30)

LOCK = threading.Lock()


def uses_global_lock():
    return LOCK


def make_closure():
    lock = threading.Lock()

    def inner():
        return lock

    return inner


class HoldsLock:
    def __init__(self):
        self.name = "ok"
        self.lock = threading.Lock()


class Nested:
    def __init__(self):
        self.inner = HoldsLock()


@pytest.fixture(autouse=True)
def by_value():
    """Functions of this module pickled by value, as a script's (__main__) functions are."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _check(obj, **kwargs):
    out = io.StringIO()
    ok, failures = inspect_serializability(obj, print_file=out, **kwargs)
    return ok, failures, out.getvalue()


def test_serializable_object():
    ok, failures, text = _check([1, "a", {"b": 2}])
    assert ok is True and failures == set()
    assert "Checking Serializability of" in text


def test_global_captured_by_a_function():
    ok, failures, text = _check(uses_global_lock, name="fn")
    assert ok is False
    (failure,) = failures
    assert isinstance(failure, FailureTuple)
    assert failure.obj is LOCK and failure.name == "LOCK" and failure.parent is uses_global_lock
    assert failure.path == ("fn", "LOCK")
    assert "FAIL" in text and "LOCK" in text


def test_nonlocal_captured_by_a_closure():
    fn = make_closure()
    ok, failures, _ = _check(fn)
    assert not ok
    (failure,) = failures
    assert failure.name == "lock" and failure.parent is fn


def test_attribute_of_an_object_and_depth():
    obj = Nested()
    ok, failures, text = _check(obj, name="obj")
    assert not ok
    (failure,) = failures
    assert failure.obj is obj.inner.lock and failure.path == ("obj", "inner", "lock")
    assert "    Serializing 'inner'" in text  # the walk is printed as an indented tree
    # depth 1 stops at the attribute: the holder is reported
    ok, failures, _ = _check(obj, name="obj", depth=1)
    (failure,) = failures
    assert failure.obj is obj.inner and failure.name == "inner"
    # depth 0: the object itself
    ok, failures, _ = _check(obj, depth=0)
    (failure,) = failures
    assert failure.obj is obj and failure.parent is None


def test_unpicklable_leaf_is_its_own_culprit():
    lock = threading.Lock()
    ok, failures, _ = _check(lock, name="lock")
    assert not ok
    assert {(f.obj, f.name) for f in failures} == {(lock, "lock")}
    assert "lock" in repr(next(iter(failures)))


def test_bad_depth():
    with pytest.raises(ValueError, match="depth"):
        inspect_serializability(1, depth=-1)


def test_exported_from_util():
    for name in ("inspect_serializability", "register_serializer", "deregister_serializer"):
        assert name in skate.util.__all__ and callable(getattr(skate.util, name))
