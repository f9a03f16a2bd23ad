"""The placement-group scheduler: bundles and node views in, bundle -> node out (exactly)."""

from __future__ import annotations

import pytest

from skate.gcs.pg_scheduler import (
    NodeView,
    feasible_ever,
    group_resources,
    rewrite_demand,
    schedule,
)
from skate.raylet import resources as res


def node(nid: str, cpu: float, free: float | None = None, alive: bool = True, **other: float) -> NodeView:
    total = res.to_fixed({"CPU": cpu, **other})
    available = res.to_fixed({"CPU": cpu if free is None else free, **other})
    return NodeView(nid, total, available, alive)


def b(cpu: float, **other: float) -> dict[str, int]:
    return res.to_fixed({"CPU": cpu, **other})


def test_strict_pack_puts_every_bundle_on_one_node_best_fit():
    nodes = [node("a", 8), node("b", 4), node("c", 2)]
    assert schedule([b(1), b(1)], "STRICT_PACK", nodes) == {0: "c", 1: "c"}
    assert schedule([b(2), b(2)], "STRICT_PACK", nodes) == {0: "b", 1: "b"}


def test_strict_pack_fails_when_no_single_node_has_room():
    nodes = [node("a", 2), node("b", 2)]
    assert schedule([b(2), b(1)], "STRICT_PACK", nodes) is None


def test_pack_uses_one_node_when_it_can_else_fewest_nodes():
    nodes = [node("a", 2), node("b", 3)]
    assert schedule([b(1), b(1)], "PACK", nodes) == {0: "a", 1: "a"}
    # 4 CPUs: no one node; fill the roomiest first, then the other.
    assert schedule([b(1)] * 4, "PACK", nodes) == {0: "b", 1: "b", 2: "b", 3: "a"}


def test_pack_pending_when_cluster_lacks_room():
    assert schedule([b(3), b(3)], "PACK", [node("a", 2), node("b", 2)]) is None


def test_strict_spread_needs_distinct_nodes():
    nodes = [node("a", 2), node("b", 2), node("c", 2)]
    assert schedule([b(1)] * 3, "STRICT_SPREAD", nodes) == {0: "a", 1: "b", 2: "c"}
    assert schedule([b(1)] * 4, "STRICT_SPREAD", nodes) is None


def test_spread_prefers_distinct_nodes_but_may_share():
    nodes = [node("a", 2), node("b", 4)]
    # fewest bundles of the group first, then the most free CPU
    assert schedule([b(1)] * 3, "SPREAD", nodes) == {0: "b", 1: "a", 2: "b"}


def test_dead_nodes_and_used_resources_are_not_used():
    nodes = [node("a", 4, free=0), node("b", 4, alive=False), node("c", 1)]
    assert schedule([b(1)], "PACK", nodes) == {0: "c"}
    assert schedule([b(2)], "PACK", nodes) is None


def test_other_resources_must_fit():
    nodes = [node("a", 4), node("b", 4, GPU=1)]
    assert schedule([b(1, GPU=1)], "PACK", nodes) == {0: "b"}


def test_rescheduling_only_places_the_lost_bundles():
    nodes = [node("a", 2, free=1), node("c", 2), node("d", 2)]
    # bundle 0 stays on a; bundle 1 must go to a node without a bundle of the group
    assert schedule([b(1), b(1)], "STRICT_SPREAD", nodes, placed={0: "a"}) == {1: "c"}
    # STRICT_PACK keeps the group together: the lost bundle goes back beside the others
    assert schedule([b(1), b(1)], "STRICT_PACK", nodes, placed={0: "a"}) == {1: "a"}
    assert schedule([b(1), b(2)], "STRICT_PACK", nodes, placed={0: "a"}) is None
    assert schedule([b(1)], "PACK", nodes, placed={0: "a"}) == {}


def test_placed_on_dead_node_is_refused():
    assert schedule([b(1), b(1)], "PACK", [node("a", 2)], placed={0: "gone"}) is None


def test_max_cpu_fraction_caps_the_group_per_node():
    nodes = [node("a", 4), node("b", 4)]
    assert schedule([b(1)] * 4, "PACK", nodes, max_cpu_fraction=0.5) == {0: "a", 1: "a", 2: "b", 3: "b"}
    assert schedule([b(1)] * 5, "PACK", nodes, max_cpu_fraction=0.5) is None


def test_unknown_strategy_raises():
    with pytest.raises(ValueError, match="SIDEWAYS"):
        schedule([b(1)], "SIDEWAYS", [node("a", 1)])


def test_feasible_ever_looks_at_totals():
    nodes = [node("a", 2, free=0), node("b", 2, free=0)]
    assert feasible_ever([b(2), b(2)], "STRICT_SPREAD", nodes)
    assert not feasible_ever([b(2), b(2)], "STRICT_PACK", nodes)


def test_group_resources_and_demand_rewrite_use_rays_names():
    got = group_resources("ab12", 1, b(2))
    assert got == {
        "CPU_group_ab12": 2 * res.UNIT,
        "CPU_group_1_ab12": 2 * res.UNIT,
        "bundle_group_ab12": 1000 * res.UNIT,
        "bundle_group_1_ab12": 1000 * res.UNIT,
    }
    assert rewrite_demand({"CPU": 1.0}, "ab12", 1) == {
        "CPU_group_1_ab12": 1.0,
        "bundle_group_1_ab12": 0.001,
        "CPU_group_ab12": 1.0,  # a given bundle's work also counts against the group-wide budget
        "bundle_group_ab12": 0.001,
    }
    assert rewrite_demand({}, "ab12", -1) == {"bundle_group_ab12": 0.001}


def test_bundle_unit_matches_the_raylets():
    from skate import _bundles

    assert _bundles.UNIT == res.UNIT
