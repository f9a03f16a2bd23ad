"""skate.experimental.internal_kv against a live GCS, and Ray's typed ids of live processes."""

from __future__ import annotations

import pytest

import skate
from skate.experimental import internal_kv as kv

FUNCS = [
    (kv._internal_kv_get, ("k",)),
    (kv._internal_kv_exists, ("k",)),
    (kv._internal_kv_put, ("k", "v")),
    (kv._internal_kv_del, ("k",)),
    (kv._internal_kv_list, ("k",)),
]


def test_not_initialized_is_a_clear_error(fresh):
    assert kv._internal_kv_initialized() is False
    for func, args in FUNCS:
        with pytest.raises(RuntimeError, match=f"{func.__name__}: .*not been started"):
            func(*args)


@pytest.fixture
def clean(cluster):
    """The module's cluster with every user key of the namespaces used here removed."""
    for namespace in (None, "ns", "other"):
        kv._internal_kv_del("", del_by_prefix=True, namespace=namespace)
    yield cluster


def test_initialized_on_driver_and_worker(clean):
    assert kv._internal_kv_initialized() is True

    @skate.remote
    def inside():
        from skate.experimental import internal_kv

        return internal_kv._internal_kv_initialized()

    assert skate.get(inside.remote(), timeout=60) is True


def test_put_get_exists_and_ray_return_values(clean):
    assert kv._internal_kv_get("missing") is None
    assert kv._internal_kv_exists("k") is False
    assert kv._internal_kv_put("k", "v1") is False  # False: the key is new
    assert kv._internal_kv_get("k") == b"v1"  # str in, bytes out
    assert kv._internal_kv_get(b"k") == b"v1"  # str keys are their UTF-8 bytes
    assert kv._internal_kv_exists(b"k") is True
    assert kv._internal_kv_put(b"k", b"v2") is True  # True: it existed (and was overwritten)
    assert kv._internal_kv_get("k") == b"v2"
    assert kv._internal_kv_put("k", "v3", overwrite=False) is True  # existed: nothing written
    assert kv._internal_kv_get("k") == b"v2"
    assert kv._internal_kv_put("new", "x", overwrite=False) is False
    assert kv._internal_kv_get("new") == b"x"
    assert kv._internal_kv_put("ключ", "значение") is False
    assert kv._internal_kv_get("ключ".encode()) == "значение".encode()
    assert kv._internal_kv_put("empty", b"") is False and kv._internal_kv_get("empty") == b""
    big = bytes(range(256)) * 4096  # 1 MiB
    kv._internal_kv_put("big", big)
    assert kv._internal_kv_get("big") == big


def test_delete_and_list(clean):
    for key in ("job/1", "job/2", "job/3", "other"):
        kv._internal_kv_put(key, "x")
    assert sorted(kv._internal_kv_list("job/")) == [b"job/1", b"job/2", b"job/3"]
    assert all(isinstance(k, bytes) for k in kv._internal_kv_list(b""))
    assert kv._internal_kv_list("nothing/") == []
    assert kv._internal_kv_del("job/1") == 1
    assert kv._internal_kv_del("job/1") == 0
    assert kv._internal_kv_del("job/") == 0  # a prefix is not a key unless del_by_prefix
    assert kv._internal_kv_del("job/", del_by_prefix=True) == 2
    assert kv._internal_kv_list("") == [b"other"]


def test_namespaces_keep_keys_apart(clean):
    kv._internal_kv_put("k", "default")
    kv._internal_kv_put("k", "ns", namespace="ns")
    kv._internal_kv_put("k", "other", namespace=b"other")
    assert kv._internal_kv_get("k") == b"default"
    assert kv._internal_kv_get("k", namespace=b"ns") == b"ns"  # str and bytes namespaces agree
    assert kv._internal_kv_get("k", namespace="other") == b"other"
    assert kv._internal_kv_get("k", namespace="nowhere") is None
    assert kv._internal_kv_exists("k", namespace="nowhere") is False
    assert kv._internal_kv_del("k", namespace="ns") == 1
    assert kv._internal_kv_get("k") == b"default" and kv._internal_kv_get("k", namespace="other") == b"other"
    assert kv._internal_kv_list("", namespace="other") == [b"k"]
    assert kv._internal_kv_del("", del_by_prefix=True, namespace="other") == 1
    assert kv._internal_kv_get("k") == b"default"


def test_user_calls_never_see_skate_own_entries(clean):
    @skate.remote
    def exported(x):
        return x + 1

    assert skate.get(exported.remote(1), timeout=60) == 2  # its code is now in the GCS's KV
    assert kv._internal_kv_list("") == []
    assert not any(k.startswith(b"fn:") for k in kv._internal_kv_list("fn:"))
    assert kv._internal_kv_del("fn:", del_by_prefix=True) == 0
    assert skate.get(exported.remote(2), timeout=60) == 3


def test_driver_and_workers_share_the_store(clean):
    kv._internal_kv_put("from-driver", "hello", namespace="ns")

    @skate.remote
    def relay():
        from skate.experimental import internal_kv

        seen = internal_kv._internal_kv_get("from-driver", namespace="ns")
        internal_kv._internal_kv_put("from-worker", seen + b" back", namespace="ns")
        return seen

    assert skate.get(relay.remote(), timeout=60) == b"hello"
    assert kv._internal_kv_get("from-worker", namespace="ns") == b"hello back"

    @skate.remote
    class Counter:
        def bump(self):
            from skate.experimental import internal_kv

            old = int(internal_kv._internal_kv_get("count") or b"0")
            internal_kv._internal_kv_put("count", str(old + 1))
            return old + 1

    counter = Counter.remote()
    assert skate.get([counter.bump.remote() for _ in range(3)], timeout=60) == [1, 2, 3]
    assert kv._internal_kv_get("count") == b"3"


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda: kv._internal_kv_put(1, "v"), "_internal_kv_put: the key must be str or bytes, got int"),
        (lambda: kv._internal_kv_put("k", None), "_internal_kv_put: the value must be str or bytes"),
        (lambda: kv._internal_kv_put("k", 3.5), "got float"),
        (lambda: kv._internal_kv_put("k", "v", "yes"), "_internal_kv_put: overwrite must be a bool"),
        (lambda: kv._internal_kv_get(["k"]), "_internal_kv_get: the key must be str or bytes, got list"),
        (lambda: kv._internal_kv_get("k", namespace=5), "_internal_kv_get: the namespace must be"),
        (lambda: kv._internal_kv_exists(None), "_internal_kv_exists: the key"),
        (lambda: kv._internal_kv_del(bytearray(b"k")), "_internal_kv_del: the key"),
        (lambda: kv._internal_kv_list(None), "_internal_kv_list: the prefix"),
    ],
)
def test_bad_inputs_are_type_errors_naming_the_call(clean, call, needle):
    with pytest.raises(TypeError, match=needle):
        call()
    assert kv._internal_kv_list("") == []  # nothing was written


def test_runtime_context_ids_parse_as_typed_ids(cluster):
    ctx = skate.get_runtime_context()
    assert skate.NodeID.from_hex(ctx.get_node_id()).hex() == ctx.get_node_id()
    assert skate.JobID.from_hex(ctx.get_job_id()).hex() == ctx.get_job_id()
    assert skate.WorkerID.from_hex(ctx.get_worker_id()).hex() == ctx.get_worker_id()

    @skate.remote
    def inside():
        c = skate.get_runtime_context()
        return skate.TaskID.from_hex(c.get_task_id()), skate.NodeID.from_hex(c.get_node_id())

    @skate.remote
    class Actor:
        def me(self):
            return skate.ActorID.from_hex(skate.get_runtime_context().get_actor_id())

    task_id, node_id = skate.get(inside.remote(), timeout=60)
    assert node_id == skate.NodeID.from_hex(ctx.get_node_id())
    assert isinstance(task_id, skate.TaskID) and not task_id.is_nil()
    assert isinstance(skate.get(Actor.remote().me.remote(), timeout=60), skate.ActorID)
