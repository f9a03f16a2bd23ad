"""GCS storage backends: one contract for memory, SQLite and Redis; bad inputs refused at open."""

from __future__ import annotations

import os
import sqlite3

import pytest

from skate.exceptions import GcsStorageError
from skate.gcs.storage import MemoryStorage, bind_cluster, open_storage, parse_spec
from skate.gcs.storage.base import StorageSpec
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def storage(request, tmp_path):
    if request.param == "memory":
        store = MemoryStorage()
    elif request.param == "sqlite":
        store = open_storage(f"sqlite:{tmp_path}/gcs.db", str(tmp_path))
    else:
        server = request.getfixturevalue("redis_server")
        server.flush()
        store = open_storage(server.url, str(tmp_path))
    store.set_namespace("c0ffee")
    yield store
    store.close()


# -- the contract --------------------------------------------------------------------------


def test_put_get_delete(storage):
    assert storage.get("kv", b"a") is None
    storage.put("kv", b"a", b"1")
    assert storage.get("kv", b"a") == b"1"
    storage.put("kv", b"a", b"2")  # overwrite
    assert storage.get("kv", b"a") == b"2"
    assert storage.delete("kv", b"a") is True
    assert storage.delete("kv", b"a") is False
    assert storage.get("kv", b"a") is None


def test_tables_are_separate_and_scan_orders_by_key(storage):
    storage.put("actors", b"b", b"2")
    storage.put("actors", b"a", b"1")
    storage.put("jobs", b"a", b"job")
    assert storage.scan("actors") == [(b"a", b"1"), (b"b", b"2")]
    assert storage.scan("jobs") == [(b"a", b"job")]
    assert storage.scan("placement_groups") == []


def test_binary_keys_and_values(storage):
    key, value = bytes(range(256)), b"\x00" * 1000 + b"\xff"
    storage.put("kv", key, value)
    assert storage.get("kv", key) == value


def test_write_batch_applies_puts_and_deletes(storage):
    storage.put("kv", b"old", b"x")
    storage.write_batch(puts=[("kv", b"k1", b"v1"), ("actors", b"a", b"A")], deletes=[("kv", b"old")])
    assert storage.scan("kv") == [(b"k1", b"v1")]
    assert storage.get("actors", b"a") == b"A"


def test_unknown_table_is_refused(storage):
    with pytest.raises(ValueError, match="unknown GCS table"):
        storage.put("nodes", b"a", b"b")
    with pytest.raises(ValueError, match="unknown GCS table"):
        storage.write_batch(puts=[("kv", b"fine", b"1"), ("bogus", b"a", b"b")])
    assert storage.get("kv", b"fine") is None  # nothing of a refused batch was written


def test_table_sizes(storage):
    storage.put("kv", b"abc", b"12345")
    sizes = storage.table_sizes()
    assert sizes["kv"][0] == 1 and sizes["kv"][1] > 0
    assert sizes["actors"] == (0, 0)


def test_bind_cluster_first_start_then_restart(storage):
    bind_cluster(storage, "c0ffee", restart=False)
    bind_cluster(storage, "c0ffee", restart=True)  # the same cluster comes back


def test_bind_cluster_refuses_another_clusters_tables(storage):
    bind_cluster(storage, "c0ffee", restart=False)
    storage.put("kv", b"k", b"precious")
    if storage.kind == "redis":
        # Redis keys are namespaced by cluster id: another cluster simply has no tables there.
        with pytest.raises(GcsStorageError, match="holds no tables of cluster beef"):
            bind_cluster(storage, "beef", restart=True)
        storage.set_namespace("c0ffee")
    else:
        with pytest.raises(GcsStorageError, match="already holds the tables of cluster c0ffee"):
            bind_cluster(storage, "beef", restart=False)
        with pytest.raises(GcsStorageError, match="not of this cluster"):
            bind_cluster(storage, "beef", restart=True)
    assert storage.get("kv", b"k") == b"precious"  # nothing overwritten


def test_restart_with_no_tables_is_refused(storage):
    with pytest.raises(GcsStorageError, match="holds no tables"):
        bind_cluster(storage, "c0ffee", restart=True)


# -- SQLite specifics -------------------------------------------------------------------------


def test_sqlite_survives_reopen_and_uses_wal(tmp_path):
    path = str(tmp_path / "gcs.db")
    store = open_storage(f"sqlite:{path}", str(tmp_path))
    bind_cluster(store, "abc", restart=False)
    store.put("actors", b"a", b"alive")
    # No close: as if the GCS was killed.
    again = open_storage(f"sqlite:{path}", str(tmp_path))
    bind_cluster(again, "abc", restart=True)
    assert again.get("actors", b"a") == b"alive"
    assert again._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert os.stat(path).st_mode & 0o777 == 0o600
    again.close()
    store.close()


def test_sqlite_default_path_is_in_the_session(tmp_path):
    store = open_storage("sqlite", str(tmp_path))
    assert store.description == f"sqlite:{tmp_path}/gcs.sqlite3"
    store.close()


def test_sqlite_corrupt_file_is_refused_untouched(tmp_path):
    path = tmp_path / "gcs.db"
    garbage = b"this is not a database" * 100
    path.write_bytes(garbage)
    with pytest.raises(GcsStorageError, match="corrupt or not an SQLite database"):
        open_storage(f"sqlite:{path}", str(tmp_path))
    assert path.read_bytes() == garbage


def test_sqlite_foreign_database_is_refused(tmp_path):
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE invoices (id INTEGER)")
    db.commit()
    db.close()
    with pytest.raises(GcsStorageError, match="database of something else"):
        open_storage(f"sqlite:{path}", str(tmp_path))


def test_sqlite_file_of_another_user_is_refused(tmp_path):
    if os.getuid() != 0:
        pytest.skip("only root can give a file to another user")
    path = tmp_path / "gcs.db"
    path.write_bytes(b"")
    os.chown(path, 65534, 65534)
    with pytest.raises(GcsStorageError, match="belongs to user 65534"):
        open_storage(f"sqlite:{path}", str(tmp_path))


def test_sqlite_link_is_refused(tmp_path):
    target = tmp_path / "real.db"
    target.write_bytes(b"")
    os.symlink(target, tmp_path / "link.db")
    with pytest.raises(GcsStorageError, match="not a regular file"):
        open_storage(f"sqlite:{tmp_path}/link.db", str(tmp_path))


def test_sqlite_missing_directory(tmp_path):
    with pytest.raises(GcsStorageError, match="cannot create"):
        open_storage(f"sqlite:{tmp_path}/no/such/dir/gcs.db", str(tmp_path))


# -- Redis specifics --------------------------------------------------------------------------


def test_redis_unreachable(tmp_path):
    from tests.redis_server import _free_port

    pytest.importorskip("redis")
    with pytest.raises(GcsStorageError, match="cannot reach Redis at redis://127.0.0.1"):
        open_storage(f"redis://127.0.0.1:{_free_port()}", str(tmp_path))


def test_redis_password(tmp_path):
    server = RedisServer(password="s3cret")
    try:
        with pytest.raises(GcsStorageError, match="needs a password"):
            open_storage(server.url, str(tmp_path))
        with pytest.raises(GcsStorageError, match="refused the password") as err:
            open_storage(server.url, str(tmp_path), password="wrong")
        assert "wrong" not in str(err.value)
        store = open_storage(server.url, str(tmp_path), password="s3cret")
        store.set_namespace("x")
        store.put("kv", b"a", b"b")
        assert store.get("kv", b"a") == b"b"
        store.close()
    finally:
        server.stop()


def test_redis_keys_are_namespaced_by_cluster(redis_server, tmp_path):
    import redis

    redis_server.flush()
    one = open_storage(redis_server.url, str(tmp_path))
    bind_cluster(one, "aaaa", restart=False)
    one.put("kv", b"k", b"from-a")
    two = open_storage(redis_server.url, str(tmp_path))
    bind_cluster(two, "bbbb", restart=False)
    assert two.get("kv", b"k") is None
    keys = sorted(redis.Redis(port=redis_server.port).keys())
    assert keys == [b"skate:aaaa:kv", b"skate:aaaa:meta", b"skate:bbbb:meta"]
    one.close()
    two.close()


# -- the --storage syntax ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, kind, target",
    [
        ("memory", "memory", ""),
        ("sqlite", "sqlite", ""),
        ("sqlite:/var/gcs.db", "sqlite", "/var/gcs.db"),
        ("sqlite:///var/gcs.db", "sqlite", "/var/gcs.db"),
        ("redis://h:6379/2", "redis", "redis://h:6379/2"),
        ("rediss://h:6380", "redis", "rediss://h:6380"),
        ("10.0.0.1:6379", "redis", "redis://10.0.0.1:6379"),
    ],
)
def test_parse_spec(text, kind, target):
    assert parse_spec(text) == StorageSpec(kind, target)


@pytest.mark.parametrize("text", ["", "mysql://x", "sqlite:", "disk", "host:port"])
def test_parse_spec_rejects(text):
    with pytest.raises(ValueError, match="storage"):
        parse_spec(text)


def test_spec_never_shows_a_password():
    assert str(parse_spec("redis://:hunter2@h:1/0")) == "redis://***@h:1/0"


def test_gcs_reconnect_timeout_system_config_key():
    from skate._system_config import parse

    assert parse({"gcs_rpc_server_reconnect_timeout_s": 5}).gcs_reconnect_timeout_s == 5.0
    assert (
        "gcs_rpc_server_reconnect_timeout_s" not in parse({"gcs_rpc_server_reconnect_timeout_s": 5}).no_effect
    )
    assert parse({}).gcs_reconnect_timeout_s is None
    with pytest.raises(ValueError, match="gcs_rpc_server_reconnect_timeout_s"):
        parse({"gcs_rpc_server_reconnect_timeout_s": -1})
