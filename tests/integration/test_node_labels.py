"""Node labels on a real cluster: nodes carry labels (add_node, init, `skate start --labels`),
`label_selector` and NodeLabelSchedulingStrategy place tasks and actors by them, and bad input
fails at the call site."""

from __future__ import annotations

import time

import pytest

import skate
from skate.cluster_utils import Cluster
from skate.util.scheduling_strategies import (
    DoesNotExist,
    Exists,
    In,
    NodeLabelSchedulingStrategy,
    NotIn,
)
from tests.conftest import assert_no_leftovers
from tests.integration import _cluster_helpers
from tests.integration._cluster_helpers import STORE, force_stop_cli, free_port, node_args, run_cli
from tests.integration._helpers import wait_for

multinode = _cluster_helpers.multinode  # the fixture


@skate.remote(num_cpus=1)
def where(seconds: float = 0.0):
    time.sleep(seconds)
    return skate.get_runtime_context().get_node_id()


@skate.remote(num_cpus=0)
class Where:
    def node(self):
        return skate.get_runtime_context().get_node_id()


@pytest.mark.timeout(120)
def test_unmatched_hard_labels_stay_pending_until_a_matching_node_joins(multinode, capfd):
    skate.init(address=multinode.address)
    ref = where.options(label_selector={"zone": "late"}).remote()
    actor = Where.options(scheduling_strategy=NodeLabelSchedulingStrategy({"zone": In("late")})).remote()
    call = actor.node.remote()
    ready, _ = skate.wait([ref, call], num_returns=2, timeout=2)
    assert ready == []  # pending, not failed
    assert wait_for(lambda: "zone in (late)" in capfd.readouterr().err, timeout=10)
    late = multinode.add_node(**node_args(num_cpus=1, labels={"zone": "late"}))
    assert skate.get([ref, call], timeout=60) == [late.node_id, late.node_id]


@pytest.mark.timeout(90)
def test_init_labels_for_the_local_node(fresh_labels):
    skate.init(num_cpus=1, labels={"env": "dev", "hardware": "mock-gpu"})
    [node] = skate.nodes()
    assert node["Labels"] == {"ray.io/node-id": node["NodeID"], "env": "dev", "hardware": "mock-gpu"}
    assert (
        skate.get(where.options(label_selector={"hardware": "mock-gpu"}).remote(), timeout=60)
        == node["NodeID"]
    )
    labels = skate.remote(lambda: skate.get_runtime_context().get_node_labels())
    assert skate.get(labels.remote(), timeout=60) == node["Labels"]  # as Ray's doc example reads them
    assert skate.get_runtime_context().get_node_labels() == node["Labels"]
    ref = where.options(label_selector={"hardware": "h100"}).remote()
    ready, _ = skate.wait([ref], timeout=2)
    assert ready == []  # stays pending, as Ray's documented example shows


@pytest.fixture
def fresh_labels():
    if skate.is_initialized():
        skate.shutdown()
    yield
    if skate.is_initialized():
        skate.shutdown()


@pytest.mark.parametrize(
    "labels, exc, culprit",
    [
        ({"zone": 1}, TypeError, "'zone'"),
        ({1: "a"}, TypeError, "1"),
        ({"bad key": "a"}, ValueError, "bad key"),
    ],
)
def test_init_and_add_node_reject_bad_labels(fresh_labels, labels, exc, culprit):
    with pytest.raises(exc) as info:
        skate.init(num_cpus=1, labels=labels)
    assert culprit in str(info.value) and not skate.is_initialized()
    cluster = Cluster()
    try:
        with pytest.raises(exc) as info:
            cluster.add_node(**node_args(num_cpus=1, labels=labels))
        assert culprit in str(info.value) and cluster.list_all_nodes() == []
    finally:
        cluster.shutdown()


@pytest.mark.timeout(120)
def test_skate_start_labels_flag(fresh_labels):
    port = free_port()
    try:
        out = run_cli(
            "start",
            "--head",
            "--port",
            str(port),
            "--num-cpus",
            "1",
            "--object-store-memory",
            str(STORE),
            "--labels",
            "zone=a,disk=ssd",
        )
        assert out.returncode == 0, out.stderr
        joined = run_cli(
            "start",
            "--address",
            f"127.0.0.1:{port}",
            "--num-cpus",
            "1",
            "--object-store-memory",
            str(STORE),
            "--labels",
            '{"zone": "b"}',
        )
        assert joined.returncode == 0, joined.stderr
        skate.init(address=f"127.0.0.1:{port}")
        assert wait_for(lambda: len([n for n in skate.nodes() if n["Alive"]]) == 2, timeout=20)
        labels = sorted(
            ({k: v for k, v in n["Labels"].items() if k != "ray.io/node-id"} for n in skate.nodes()),
            key=lambda d: d["zone"],
        )
        assert labels == [{"zone": "a", "disk": "ssd"}, {"zone": "b"}]
        b_node = [n["NodeID"] for n in skate.nodes() if n["Labels"]["zone"] == "b"]
        assert skate.get(where.options(label_selector={"zone": "b"}).remote(), timeout=60) == b_node[0]
        bad = run_cli("start", "--head", "--port", str(free_port()), "--labels", "zone")
        assert bad.returncode == 2 and "--labels" in bad.stderr and "'zone'" in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr
    finally:
        force_stop_cli()


# -- one three-node cluster for the tests below (they come last: it lives to the module's end)
@pytest.fixture(scope="module")
def zones():
    """A head (zone h) and two nodes: zone a, and zone b with disk ssd; 1 CPU each."""
    if skate.is_initialized():
        skate.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args=node_args(num_cpus=1, labels={"zone": "h"}))
    try:
        a = cluster.add_node(**node_args(num_cpus=1, labels={"zone": "a"}))
        b = cluster.add_node(**node_args(num_cpus=1, labels={"zone": "b", "disk": "ssd"}))
        assert _cluster_helpers.raylets_see(cluster)
        skate.init(address=cluster.address)
        yield {"h": cluster.head_node.node_id, "a": a.node_id, "b": b.node_id}
    finally:
        if skate.is_initialized():
            skate.shutdown()
        cluster.shutdown()
        assert_no_leftovers()


@pytest.mark.timeout(90)
def test_nodes_show_labels_with_the_default_node_id_label(zones):
    labels = {n["NodeID"]: n["Labels"] for n in skate.nodes() if n["Alive"]}
    assert labels == {
        zones["h"]: {"ray.io/node-id": zones["h"], "zone": "h"},
        zones["a"]: {"ray.io/node-id": zones["a"], "zone": "a"},
        zones["b"]: {"ray.io/node-id": zones["b"], "zone": "b", "disk": "ssd"},
    }


@pytest.mark.timeout(90)
def test_label_selector_runs_tasks_only_on_matching_nodes(zones):
    def ran_on(selector: dict, n: int = 4) -> set[str]:
        refs = [where.options(label_selector=selector).remote(0.05) for _ in range(n)]
        return set(skate.get(refs, timeout=60))

    assert ran_on({"zone": "a"}) == {zones["a"]}
    assert ran_on({"zone": "in(a,b)"}, 6) <= {zones["a"], zones["b"]}
    assert ran_on({"zone": "!in(a,h)"}) == {zones["b"]}
    assert ran_on({"disk": "ssd"}) == {zones["b"]}
    assert ran_on({"zone": "!h", "disk": "!ssd"}) == {zones["a"]}  # a node without disk is not ssd
    assert ran_on({"ray.io/node-id": zones["a"]}) == {zones["a"]}
    # The decorator form, too.
    pinned = skate.remote(label_selector={"zone": "b"})(lambda: skate.get_runtime_context().get_node_id())
    assert skate.get(pinned.remote(), timeout=60) == zones["b"]


@pytest.mark.timeout(90)
def test_hard_strategy_places_tasks_and_actors_on_matching_nodes(zones):
    hard = NodeLabelSchedulingStrategy({"zone": In("a", "b"), "disk": DoesNotExist()})
    assert set(
        skate.get([where.options(scheduling_strategy=hard).remote() for _ in range(4)], timeout=60)
    ) == {zones["a"]}
    exists = NodeLabelSchedulingStrategy({"disk": Exists()})
    actors = [Where.options(scheduling_strategy=exists).remote() for _ in range(3)]
    assert set(skate.get([x.node.remote() for x in actors], timeout=60)) == {zones["b"]}
    not_in = NodeLabelSchedulingStrategy({"zone": NotIn("h", "b")})
    actors += [Where.options(scheduling_strategy=not_in).remote() for _ in range(2)]
    assert skate.get([x.node.remote() for x in actors[3:]], timeout=60) == [zones["a"]] * 2
    by_selector = Where.options(label_selector={"zone": "h"}).remote()
    assert skate.get(by_selector.node.remote(), timeout=60) == zones["h"]
    for actor in actors + [by_selector]:
        skate.kill(actor)


@pytest.mark.timeout(90)
def test_soft_labels_prefer_matching_nodes_and_fall_back(zones):
    prefer_ssd = NodeLabelSchedulingStrategy(None, soft={"disk": In("ssd")})
    assert [
        skate.get(where.options(scheduling_strategy=prefer_ssd).remote(), timeout=60) for _ in range(3)
    ] == [zones["b"]] * 3
    # No node has nvme: soft only, so the tasks run anyway.
    nowhere = NodeLabelSchedulingStrategy(None, soft={"disk": In("nvme")})
    assert (
        len(skate.get([where.options(scheduling_strategy=nowhere).remote() for _ in range(3)], timeout=60))
        == 3
    )
    # Hard narrows, soft orders within it.
    both = NodeLabelSchedulingStrategy({"zone": NotIn("h")}, soft={"disk": Exists()})
    actor = Where.options(scheduling_strategy=both).remote()
    assert skate.get(actor.node.remote(), timeout=60) == zones["b"]
    skate.kill(actor)


@pytest.mark.timeout(90)
def test_bad_label_input_fails_at_the_call_site(zones):
    with pytest.raises(TypeError, match="label_selector"):
        where.options(label_selector="zone=a")
    with pytest.raises(TypeError, match="'zone'"):
        where.options(label_selector={"zone": 1}).remote()
    with pytest.raises(ValueError, match="in\\(\\)"):
        Where.options(label_selector={"zone": "in()"})
    with pytest.raises(ValueError, match="label_selector"):
        skate.remote(label_selector={"": "a"})(lambda: 1)
    with pytest.raises(ValueError, match="hard\\['zone'\\]"):
        NodeLabelSchedulingStrategy({"zone": "a"})
    with pytest.raises(ValueError, match="both be empty"):
        NodeLabelSchedulingStrategy({})
    with pytest.raises(ValueError, match="In\\(\\)"):
        In()
