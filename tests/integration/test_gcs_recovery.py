"""GCS fault tolerance: SIGKILL the GCS in the middle of a workload, start it again with the
same storage (SQLite or Redis), and the cluster carries on with its state intact; a GCS whose
storage was `memory` cannot come back, and says so."""

from __future__ import annotations

import time

import pytest

import skate
from skate.cluster_utils import Cluster
from skate.experimental import internal_kv
from skate.util.placement_group import placement_group, placement_group_table
from tests.integration._cluster_helpers import node_args
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(150)

NAMESPACE = "gcs-recovery"


@pytest.fixture(params=["sqlite", "redis"])
def durable_cluster(request):
    if skate.is_initialized():
        skate.shutdown()
    server = RedisServer() if request.param == "redis" else None
    storage = server.url if server is not None else "sqlite"
    cluster = Cluster(initialize_head=True, head_node_args=node_args(num_cpus=2, storage=storage))
    try:
        yield cluster
    finally:
        if skate.is_initialized():
            skate.shutdown()
        cluster.shutdown()
        if server is not None:
            server.stop()


@skate.remote
class Counter:
    def __init__(self, start: int):
        self.value = start

    def add(self, n: int) -> int:
        self.value += n
        return self.value

    def get(self) -> int:
        return self.value


@skate.remote
def slow_square(x: int) -> int:
    time.sleep(0.02)
    return x * x


def _gcs_call(method: str, payload: dict | None = None):
    from skate.core_worker import context

    core = context.current
    return core.request(core.gcs, method, payload or {}, timeout=30)


def _wait_gcs_answers(deadline_s: float = 60.0):
    """Until the driver has reconnected to the restarted GCS (polling with a deadline)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return _gcs_call("gcs_info")
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_gcs_restart_keeps_the_cluster_going(durable_cluster):
    cluster = durable_cluster
    skate.init(address=cluster.address, namespace=NAMESPACE)
    detached = Counter.options(name="keeper", lifetime="detached").remote(100)
    named = Counter.options(name="named").remote(0)
    assert skate.get(detached.add.remote(1), timeout=30) == 101
    assert skate.get(named.add.remote(5), timeout=30) == 5
    pg = placement_group([{"CPU": 0.5}], name="survivor")
    assert pg.wait(30)
    internal_kv._internal_kv_put("config", b"v1", namespace="app")
    internal_kv._internal_kv_put("other", b"v2", namespace="app")
    before = _gcs_call("get_jobs")
    assert len(before) == 1

    # A workload in flight when the GCS dies; more submitted while it is down.
    tasks = [slow_square.remote(i) for i in range(40)]
    calls = [named.add.remote(1) for _ in range(20)]
    cluster.head_node.kill_gcs()
    tasks += [slow_square.remote(i) for i in range(40, 60)]
    calls += [named.add.remote(1) for _ in range(10)]
    assert skate.get(detached.add.remote(1), timeout=30) == 102  # actor calls go worker to worker
    cluster.head_node.restart_gcs()

    assert skate.get(tasks, timeout=60) == [i * i for i in range(60)]
    assert skate.get(calls, timeout=60) == list(range(6, 36))
    info = _wait_gcs_answers()
    assert info["start"]["restarts"] == 1 and info["durable"]

    # Names, state, groups, KV and the job survived.
    keeper = skate.get_actor("keeper")
    assert skate.get(keeper.get.remote(), timeout=30) == 102
    again = skate.get_actor("named")
    assert skate.get(again.get.remote(), timeout=30) == 35
    assert sorted(skate.util.list_named_actors()) == ["keeper", "named"]
    table = placement_group_table()
    assert table[pg.id.hex()]["state"] == "CREATED" and table[pg.id.hex()]["name"] == "survivor"
    assert internal_kv._internal_kv_get("config", namespace="app") == b"v1"
    assert sorted(internal_kv._internal_kv_list("", namespace="app")) == [b"config", b"other"]
    jobs = _gcs_call("get_jobs")
    assert [j["job_id"] for j in jobs] == [before[0]["job_id"]] and not jobs[0]["is_dead"]

    # New work: a function and an actor class never seen before, and a new group.
    @skate.remote
    def cube(x):
        return x**3

    @skate.remote
    class Fresh:
        def ping(self):
            return "pong"

    assert skate.get(cube.remote(3), timeout=30) == 27
    assert skate.get(Fresh.options(name="fresh").remote().ping.remote(), timeout=30) == "pong"
    pg2 = placement_group([{"CPU": 0.5}])
    assert pg2.wait(30)
    skate.kill(keeper)


def test_head_restart_with_memory_storage_fails_clearly():
    if skate.is_initialized():
        skate.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args=node_args(num_cpus=1))
    try:
        cluster.head_node.kill_gcs()
        with pytest.raises(RuntimeError, match="--storage memory: its tables .* died"):
            cluster.head_node.restart_gcs()
    finally:
        cluster.shutdown()
