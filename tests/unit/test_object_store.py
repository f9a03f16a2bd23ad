"""The raylet's object table: create, seal, pin, release, free."""

from __future__ import annotations

import pytest

from skate.exceptions import ObjectStoreFullError
from skate.raylet.object_store import ObjectStore

A, B, C = b"\x01" * 20, b"\x02" * 20, b"\x03" * 20


def sealed(store: ObjectStore, oid: bytes, size: int, owner: str = "owner") -> int:
    off = store.create(oid, size, owner)
    store.seal(oid)
    return off


def test_create_seal_get():
    store = ObjectStore(4096)
    off = store.create(A, 100, "owner")
    assert store.used_bytes == 128
    assert store.get(A, "reader") is None  # not sealed yet
    store.seal(A)
    assert store.get(A, "reader") == (off, 100)
    assert store.num_created == 1
    assert store.created_bytes == 100
    assert store.capacity == 4096


def test_get_unknown_is_none():
    store = ObjectStore(4096)
    assert store.get(A, "reader") is None
    store.release(A, "reader")  # harmless
    store.free(A)  # harmless
    store.seal(A)  # harmless
    assert A not in store.objects
    assert store.used_bytes == 0


def test_objects_get_distinct_offsets():
    store = ObjectStore(4096)
    offs = [sealed(store, bytes([i]) * 20, 100) for i in range(5)]
    assert len(set(offs)) == 5
    assert all(o % 64 == 0 for o in offs)


def test_free_unpinned_returns_memory_at_once():
    store = ObjectStore(4096)
    sealed(store, A, 1000)
    assert store.used_bytes == 1024
    store.free(A)
    assert store.used_bytes == 0
    assert A not in store.objects
    assert store.get(A, "reader") is None


def test_free_while_pinned_is_deferred_to_last_release():
    store = ObjectStore(4096)
    sealed(store, A, 1000)
    assert store.get(A, "r1") is not None
    assert store.get(A, "r1") is not None  # a second pin by the same client
    assert store.get(A, "r2") is not None
    store.free(A)
    assert store.used_bytes == 1024
    assert store.get(A, "r3") is None  # freed objects are not handed out again
    store.release(A, "r1")
    store.release(A, "r2")
    assert store.used_bytes == 1024  # r1 still holds one pin
    store.release(A, "r1")
    assert store.used_bytes == 0
    assert A not in store.objects


def test_release_without_free_keeps_the_object():
    store = ObjectStore(4096)
    off = sealed(store, A, 64)
    store.get(A, "r")
    store.release(A, "r")
    store.release(A, "r")  # one release too many: no effect
    assert store.get(A, "r") == (off, 64)
    assert store.used_bytes == 64


def test_freed_memory_is_reused():
    store = ObjectStore(1024)
    off = sealed(store, A, 1024)
    store.free(A)
    assert sealed(store, B, 1024) == off


def test_create_larger_than_capacity():
    store = ObjectStore(1024)
    with pytest.raises(ObjectStoreFullError) as info:
        store.create(A, 2048, "owner")
    assert "2048" in str(info.value) and "1024" in str(info.value)
    assert A not in store.objects
    assert store.num_created == 0


def test_full_store_error_mentions_sizes():
    store = ObjectStore(1024)
    sealed(store, A, 768)
    with pytest.raises(ObjectStoreFullError) as info:
        store.create(B, 512, "owner")
    msg = str(info.value)
    assert "512" in msg  # the request
    assert "768" in msg  # what is in use
    assert "1024" in msg  # the capacity
    assert B not in store.objects
    assert store.used_bytes == 768


def test_duplicate_create_of_sealed_object_raises():
    store = ObjectStore(4096)
    sealed(store, A, 100)
    with pytest.raises(ValueError):
        store.create(A, 100, "owner")
    assert store.num_created == 1
    assert store.used_bytes == 128


def test_repeated_create_of_unsealed_object_returns_same_offset():
    store = ObjectStore(4096)
    off = store.create(A, 100, "owner")
    assert store.create(A, 100, "owner") == off
    assert store.used_bytes == 128
    with pytest.raises(ValueError):
        store.create(A, 200, "owner")  # same id, different size


def test_client_gone_drops_pins_and_frees_its_objects():
    store = ObjectStore(4096)
    sealed(store, A, 64, owner="dead")  # owned by the dead client, unpinned
    sealed(store, B, 64, owner="alive")  # owned by someone else, pinned by the dead client
    sealed(store, C, 64, owner="dead")  # owned by the dead client, pinned by a live one
    store.get(B, "dead")
    store.get(B, "dead")
    store.get(C, "alive")
    store.client_gone("dead")
    assert A not in store.objects
    assert B in store.objects and store.objects[B].pins == {}
    assert C in store.objects  # still pinned by 'alive'
    assert store.get(C, "newcomer") is None  # but no longer handed out
    assert store.used_bytes == 128
    store.release(C, "alive")
    assert C not in store.objects
    # B stays for its owner until the owner frees it.
    assert store.get(B, "alive") is not None
    store.release(B, "alive")
    store.free(B)
    assert store.used_bytes == 0


def test_client_gone_frees_unsealed_objects_it_was_creating():
    store = ObjectStore(4096)
    store.create(A, 64, "dead")
    store.client_gone("dead")
    assert A not in store.objects
    assert store.used_bytes == 0
