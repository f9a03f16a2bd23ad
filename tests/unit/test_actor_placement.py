"""The GCS's actor placement (Ray's hybrid policy) as a pure function."""

from __future__ import annotations

from collections import Counter

from skate.gcs.placement import NodeLoad, choose_node
from skate.raylet import resources as res


def node(nid: str, cpus: float, free: float | None = None, **extra: float) -> NodeLoad:
    total = res.to_fixed({"CPU": cpus, **extra})
    available = res.to_fixed({"CPU": cpus if free is None else free, **extra})
    return NodeLoad(nid, total, available)


ONE_CPU = res.to_fixed({"CPU": 1})


def place(nodes: list[NodeLoad], shape: dict, hold: dict, preferred: str | None) -> str:
    """Place one actor and account for it as the GCS does (its reported use follows later)."""
    nid = choose_node(shape, nodes, preferred)
    assert nid is not None
    target = next(n for n in nodes if n.node_id == nid)
    res.add(target.actors_placed, shape)
    res.add(target.actors_held, hold)
    res.subtract(target.available, hold)  # the raylet's report of the granted lease
    return nid


def test_preferred_node_while_below_the_threshold():
    nodes = [node("a", 4), node("b", 4), node("c", 4)]
    assert choose_node(ONE_CPU, nodes, preferred="b") == "b"
    nodes[1].actors_placed = res.to_fixed({"CPU": 1})  # 25% used: still below 50%
    assert choose_node(ONE_CPU, nodes, preferred="b") == "b"


def test_preferred_node_at_the_threshold_gives_way_to_the_least_loaded():
    nodes = [node("a", 4, free=1), node("b", 4, free=2), node("c", 4, free=3)]
    # b is at 50%: c (25%, score 0) wins over b; a (75%) is not considered first.
    assert choose_node(ONE_CPU, nodes, preferred="b") == "c"


def test_all_nodes_loaded_the_least_utilized_wins_ties_by_node_id():
    nodes = [node("c", 4, free=1), node("a", 4, free=2), node("b", 4, free=2)]
    assert choose_node(ONE_CPU, nodes, preferred="c") == "a"


def test_many_default_actors_spread_over_all_nodes():
    """Default actors hold no CPU once placed, but count as load: 12 of them on 3 nodes."""
    nodes = [node("head", 1), node("n1", 1), node("n2", 1)]
    placed = Counter(place(nodes, ONE_CPU, {}, preferred="head") for _ in range(12))
    assert placed == {"head": 4, "n1": 4, "n2": 4}


def test_default_actors_pack_on_the_preferred_node_until_half_used():
    nodes = [node("head", 8), node("n1", 8)]
    first = [place(nodes, ONE_CPU, {}, preferred="head") for _ in range(4)]
    assert first == ["head"] * 4  # 0/8 .. 3/8 used: below 50%
    assert place(nodes, ONE_CPU, {}, preferred="head") == "n1"


def test_actors_holding_cpu_are_not_counted_twice():
    nodes = [node("a", 4), node("b", 4)]
    place(nodes, ONE_CPU, ONE_CPU, preferred="a")  # holds 1 CPU: reported and placed
    assert nodes[0].utilization() == 0.25


def test_a_node_with_room_now_beats_one_that_could_hold_it_later():
    nodes = [node("a", 2, free=0), node("b", 8, free=0.5)]
    assert choose_node(ONE_CPU, nodes, preferred="a") == "b"  # neither has room: the least used
    nodes.append(node("c", 2, free=1))
    assert choose_node(ONE_CPU, nodes, preferred="a") == "c"


def test_infeasible_everywhere_is_none():
    nodes = [node("a", 2), node("b", 2)]
    assert choose_node(res.to_fixed({"CPU": 4}), nodes) is None
    assert choose_node(res.to_fixed({"CPU": 1, "custom": 1}), nodes) is None
    assert choose_node(ONE_CPU, []) is None


def test_custom_resource_only_on_one_node():
    nodes = [node("a", 2), node("b", 2, blue=1)]
    assert choose_node(res.to_fixed({"CPU": 1, "blue": 1}), nodes, preferred="a") == "b"


def test_requests_without_gpu_avoid_gpu_nodes():
    nodes = [node("gpu", 8, GPU=1), node("cpu", 2, free=1)]
    assert choose_node(ONE_CPU, nodes, preferred="gpu") == "cpu"
    nodes[1].available = {}  # no room on the CPU-only node: the GPU node will do
    assert choose_node(ONE_CPU, nodes, preferred="gpu") == "gpu"
    assert choose_node(res.to_fixed({"GPU": 1}), nodes, preferred="cpu") == "gpu"
