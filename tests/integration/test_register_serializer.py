"""skate.util.register_serializer: a class's custom serialization, per process as in Ray."""

from __future__ import annotations

import threading

import pytest

import skate
from skate import _serialization
from skate.util import deregister_serializer, register_serializer

pytestmark = pytest.mark.timeout(60)


class Locked:
    """Unpicklable by default (it holds a lock)."""

    def __init__(self, value):
        self.value = value
        self.lock = threading.Lock()


def to_state(obj):
    return {"value": obj.value}


def from_state(state):
    out = Locked(state["value"])
    out.rebuilt = True
    return out


@pytest.fixture
def registered():
    register_serializer(Locked, serializer=to_state, deserializer=from_state)
    yield
    deregister_serializer(Locked)


@skate.remote
def read(obj):
    return obj.value, getattr(obj, "rebuilt", False)


@skate.remote
def make(value):
    return Locked(value)


@skate.remote
class Registers:
    def __init__(self):
        register_serializer(Locked, serializer=to_state, deserializer=from_state)

    def make(self, value):
        return Locked(value)


def test_without_registration_it_fails_to_serialize(cluster):
    with pytest.raises(TypeError, match="Locked"):
        skate.put(Locked(1))


def test_driver_registration_serializes_args_and_puts(cluster, registered):
    ref = skate.put(Locked(5))
    got = skate.get(ref)
    assert got.value == 5 and got.rebuilt
    # the worker rebuilds it with the deserializer carried in the bytes: no registration there
    assert skate.get(read.remote(Locked(7))) == (7, True)
    assert skate.get(read.remote(ref)) == (5, True)
    nested = skate.get(skate.put({"k": [Locked(3)]}))
    assert nested["k"][0].rebuilt


def test_registration_is_per_process(cluster, registered):
    # the worker did not register: its result fails to serialize there
    with pytest.raises(TypeError, match="Locked"):
        skate.get(make.remote(1))
    # an actor that registers in its own process can return one
    actor = Registers.remote()
    got = skate.get(actor.make.remote(9))
    assert got.value == 9 and got.rebuilt


def test_deregister_restores_plain_pickling(cluster):
    register_serializer(Locked, serializer=to_state, deserializer=from_state)
    assert _serialization._dumps is not _serialization.cloudpickle.dumps
    deregister_serializer(Locked)
    deregister_serializer(Locked)  # no effect the second time, as in Ray
    assert _serialization._dumps is _serialization.cloudpickle.dumps  # the fast path is back
    with pytest.raises(TypeError, match="Locked"):
        skate.put(Locked(1))


def test_serializer_errors_name_the_object(cluster):
    def broken(obj):
        raise RuntimeError("serializer broke")

    register_serializer(Locked, serializer=broken, deserializer=from_state)
    try:
        with pytest.raises(TypeError, match="serializer broke"):
            skate.put(Locked(1))
    finally:
        deregister_serializer(Locked)


def test_bad_input():
    with pytest.raises(TypeError, match="must be a class"):
        register_serializer(Locked(1), serializer=to_state, deserializer=from_state)
    with pytest.raises(TypeError, match="serializer must be callable"):
        register_serializer(Locked, serializer="nope", deserializer=from_state)
    with pytest.raises(TypeError, match="deserializer must be callable"):
        register_serializer(Locked, serializer=to_state, deserializer=None)
    with pytest.raises(TypeError, match="built-in type int"):
        register_serializer(int, serializer=to_state, deserializer=from_state)
    with pytest.raises(TypeError):
        register_serializer(Locked, to_state, from_state)  # keyword-only, as in Ray
    with pytest.raises(TypeError, match="must be a class"):
        deregister_serializer("Locked")
    assert not _serialization._custom_reducers
