"""Placement-group API checks that need no cluster: bad input fails at the call site, naming
the culprit, before anything is sent; demand rewriting and capture of child tasks."""

from __future__ import annotations

import pickle

import pytest

import skate
from skate._id_types import PlacementGroupID
from skate._options import resolve_placement_group
from skate.core_worker import call_context
from skate.core_worker.call_context import CallContext
from skate.util.placement_group import PlacementGroup, get_current_placement_group, placement_group
from skate.util.scheduling_strategies import PlacementGroupSchedulingStrategy


@pytest.fixture(autouse=True)
def no_cluster():
    assert not skate.is_initialized()


@pytest.mark.parametrize(
    "bundles, error, words",
    [
        ([], ValueError, "empty list"),
        ({"CPU": 1}, TypeError, "list"),
        ([{"CPU": 1}, {}], ValueError, "bundle 1"),
        ([{"CPU": 0, "GPU": 0}], ValueError, "bundle 0"),
        ([{"CPU": -1}], ValueError, "CPU"),
        ([{"CPU": float("nan")}], ValueError, "CPU"),
        ([{"CPU": "1"}], TypeError, "CPU"),
        ([{1: 1}], TypeError, "resource names"),
        (["CPU"], TypeError, "bundle 0"),
    ],
)
@pytest.mark.timeout(10)
def test_bad_bundles_are_rejected_before_anything_is_sent(bundles, error, words):
    with pytest.raises(error, match=words):
        placement_group(bundles)


@pytest.mark.timeout(10)
def test_bad_strategy_name_and_lifetime():
    with pytest.raises(ValueError, match="SIDEWAYS"):
        placement_group([{"CPU": 1}], strategy="SIDEWAYS")
    with pytest.raises(TypeError, match="name"):
        placement_group([{"CPU": 1}], name=3)
    with pytest.raises(ValueError, match="lifetime"):
        placement_group([{"CPU": 1}], lifetime="forever")
    with pytest.raises(ValueError, match="_max_cpu_fraction_per_node"):
        placement_group([{"CPU": 1}], _max_cpu_fraction_per_node=1.5)


def group(*bundles: dict) -> PlacementGroup:
    return PlacementGroup(PlacementGroupID.from_random(), list(bundles))


def test_handle_pickles_with_its_bundles():
    pg = group({"CPU": 1}, {"GPU": 1})
    again = pickle.loads(pickle.dumps(pg))
    assert again == pg and again.id == pg.id
    assert again.bundle_specs == [{"CPU": 1}, {"GPU": 1}] and again.bundle_count == 2


def test_demand_is_rewritten_to_the_bundle_resources():
    pg = group({"CPU": 2}, {"CPU": 1, "GPU": 1})
    pid = pg.id.hex()
    strategy = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=1)
    shapes, wire = resolve_placement_group({"scheduling_strategy": strategy}, [{"CPU": 1, "GPU": 1}])
    assert shapes == [
        {
            f"CPU_group_1_{pid}": 1,
            f"GPU_group_1_{pid}": 1,
            f"bundle_group_1_{pid}": 0.001,
            f"CPU_group_{pid}": 1,  # and from the group-wide budget, shared with any-bundle work
            f"GPU_group_{pid}": 1,
            f"bundle_group_{pid}": 0.001,
        }
    ]
    assert wire == [pid, 1, False, [{"CPU": 2}, {"CPU": 1, "GPU": 1}]]
    shapes, wire = resolve_placement_group({"placement_group": pg}, [{"CPU": 2}])  # legacy options
    assert shapes == [{f"CPU_group_{pid}": 2, f"bundle_group_{pid}": 0.001}]
    assert wire[1] == -1


def test_bundle_index_out_of_range_and_demand_too_big_fail_at_submission():
    pg = group({"CPU": 1}, {"CPU": 1})
    with pytest.raises(ValueError, match="out of range"):
        resolve_placement_group(
            {"scheduling_strategy": PlacementGroupSchedulingStrategy(pg, 2)}, [{"CPU": 1}]
        )
    with pytest.raises(ValueError, match="cannot fit into bundle 0"):
        resolve_placement_group(
            {"scheduling_strategy": PlacementGroupSchedulingStrategy(pg, 0)}, [{"CPU": 2}]
        )
    with pytest.raises(ValueError, match="cannot fit into any bundle"):
        resolve_placement_group({"placement_group": pg}, [{"GPU": 1}])
    with pytest.raises(TypeError, match="PlacementGroup"):
        resolve_placement_group({"placement_group": "pg"}, [{"CPU": 1}])
    with pytest.raises(ValueError, match="placement_group_bundle_index"):
        PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=-2)


def test_children_are_captured_only_when_asked():
    pg = group({"CPU": 1})
    pid = pg.id.hex()
    outside, wire = resolve_placement_group({"scheduling_strategy": None}, [{"CPU": 1}])
    assert outside == [{"CPU": 1}] and wire is None
    assert get_current_placement_group() is None
    for capture, expect in ((True, [{f"CPU_group_{pid}": 1, f"bundle_group_{pid}": 0.001}]), (False, None)):
        token = call_context.enter(
            CallContext(b"t", "parent", placement_group=[pid, 0, capture, [{"CPU": 1}]])
        )
        try:
            assert get_current_placement_group() == pg
            shapes, wire = resolve_placement_group({"scheduling_strategy": None}, [{"CPU": 1}])
            assert (shapes if wire else None) == expect
            # A strategy of its own, or placement_group=None, opts out of the capture.
            assert resolve_placement_group({"scheduling_strategy": "SPREAD"}, [{"CPU": 1}])[1] is None
            assert (
                resolve_placement_group({"scheduling_strategy": None, "placement_group": None}, [{}])[1]
                is None
            )
        finally:
            call_context.leave(token)
