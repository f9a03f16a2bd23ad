"""The GCS's KV table: namespaces apart, overwrite, delete by prefix, listing."""

from __future__ import annotations

from skate.gcs.kv_store import KvStore


def test_put_get_overwrite():
    kv = KvStore()
    assert kv.get(b"", b"k") is None and not kv.exists(b"", b"k")
    assert kv.put(b"", b"k", b"1") is True  # new
    assert kv.put(b"", b"k", b"2") is False and kv.get(b"", b"k") == b"2"
    assert kv.put(b"", b"k", b"3", overwrite=False) is False and kv.get(b"", b"k") == b"2"
    assert kv.exists(b"", b"k")


def test_namespaces_and_the_system_table_are_apart():
    kv = KvStore()
    kv.put(None, b"fn:abc", b"system")
    kv.put(b"", b"fn:abc", b"user")
    kv.put(b"other", b"fn:abc", b"other")
    assert kv.get(None, b"fn:abc") == b"system"
    assert kv.get(b"", b"fn:abc") == b"user"
    assert kv.keys(b"", b"") == [b"fn:abc"] and kv.keys(b"missing", b"") == []
    assert kv.delete(b"", b"fn:", by_prefix=True) == 1
    assert kv.get(None, b"fn:abc") == b"system" and kv.get(b"other", b"fn:abc") == b"other"


def test_delete_and_keys_by_prefix():
    kv = KvStore()
    for key in (b"a/1", b"a/2", b"b/1", b"a"):
        kv.put(b"ns", key, b"v")
    assert kv.keys(b"ns", b"a/") == [b"a/1", b"a/2"]
    assert sorted(kv.keys(b"ns")) == [b"a", b"a/1", b"a/2", b"b/1"]
    assert kv.delete(b"ns", b"a/") == 0  # not a key, and not by prefix
    assert kv.delete(b"ns", b"a/", by_prefix=True) == 2
    assert kv.delete(b"ns", b"a") == 1 and kv.delete(b"ns", b"a") == 0
    assert kv.delete(b"nothing", b"", by_prefix=True) == 0
    assert kv.keys(b"ns") == [b"b/1"]
