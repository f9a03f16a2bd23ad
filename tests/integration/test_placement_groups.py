"""Placement groups on real clusters: strategies, pending groups, node death, removal, lifetimes."""

from __future__ import annotations

import time

import pytest

import skate
from skate.exceptions import RayActorError, RayError
from skate.util.placement_group import (
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from skate.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from tests.integration import _cluster_helpers
from tests.integration._cluster_helpers import node_args
from tests.integration._helpers import wait_for

multinode = _cluster_helpers.multinode  # the fixture


@skate.remote(num_cpus=1)
def node_of():
    return skate.get_runtime_context().get_node_id()


@skate.remote(num_cpus=1)
class Sleeper:
    def node(self):
        return skate.get_runtime_context().get_node_id()


def in_bundle(pg, i: int = -1) -> PlacementGroupSchedulingStrategy:
    return PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=i)


def nodes_of(pg) -> list[str]:
    return skate.get(
        [node_of.options(scheduling_strategy=in_bundle(pg, i)).remote() for i in range(pg.bundle_count)]
    )


def no_leak() -> bool:
    return skate.available_resources() == skate.cluster_resources()


def three_nodes(cluster) -> None:
    """Head (1 CPU) plus two 2-CPU nodes."""
    for _ in range(2):
        cluster.add_node(**node_args(num_cpus=2))
    cluster.wait_for_nodes()
    skate.init(address=cluster.address)


@pytest.mark.timeout(90)
def test_every_strategy_places_bundles_as_ray_does(multinode):
    three_nodes(multinode)
    pack = placement_group([{"CPU": 1}] * 2, strategy="PACK")
    assert pack.wait(30)
    assert len(set(nodes_of(pack))) == 1
    table = placement_group_table(pack)
    assert table["state"] == "CREATED" and table["strategy"] == "PACK"
    assert set(table["bundles_to_node_id"].values()) == set(nodes_of(pack))
    remove_placement_group(pack)

    spread = placement_group([{"CPU": 1}] * 3, strategy="SPREAD")
    assert spread.wait(30)
    assert len(set(nodes_of(spread))) == 3
    remove_placement_group(spread)

    # SPREAD may share a node when it must; STRICT_SPREAD may not.
    crowded = placement_group([{"CPU": 1}] * 4, strategy="SPREAD")
    assert crowded.wait(30)
    assert len(set(nodes_of(crowded))) == 3
    remove_placement_group(crowded)
    strict = placement_group([{"CPU": 1}] * 4, strategy="STRICT_SPREAD")
    assert not strict.wait(1)
    assert placement_group_table(strict)["state"] == "PENDING"
    remove_placement_group(strict)

    together = placement_group([{"CPU": 1}] * 2, strategy="STRICT_PACK")
    assert together.wait(30)
    assert len(set(nodes_of(together))) == 1
    remove_placement_group(together)
    assert wait_for(no_leak, timeout=10), (skate.available_resources(), skate.cluster_resources())


@pytest.mark.timeout(90)
def test_pending_group_is_placed_when_a_node_that_fits_joins(multinode):
    skate.init(address=multinode.address)
    pg = placement_group([{"CPU": 1, "accel": 1}])
    ready = pg.ready()
    assert skate.wait([ready], timeout=1)[0] == []
    assert placement_group_table(pg)["state"] == "PENDING"
    multinode.add_node(**node_args(num_cpus=1, resources={"accel": 1}))
    assert skate.get(ready, timeout=30) == pg
    assert placement_group_table(pg)["state"] == "CREATED"
    remove_placement_group(pg)
    assert wait_for(no_leak, timeout=10)


@pytest.mark.timeout(120)
def test_bundles_on_a_dead_node_are_rescheduled(multinode):
    doomed = multinode.add_node(**node_args(num_cpus=1, resources={"slot": 1}))
    multinode.wait_for_nodes()
    skate.init(address=multinode.address)
    pg = placement_group([{"CPU": 1}, {"slot": 1}], strategy="SPREAD")
    assert pg.wait(30)
    assert placement_group_table(pg)["bundles_to_node_id"][1] == doomed.node_id
    actor = Sleeper.options(num_cpus=0, scheduling_strategy=in_bundle(pg, 1), max_restarts=1).remote()
    assert skate.get(actor.node.remote(), timeout=30) == doomed.node_id
    multinode.remove_node(doomed)
    assert wait_for(lambda: placement_group_table(pg)["state"] == "RESCHEDULING", timeout=20)
    replacement = multinode.add_node(**node_args(num_cpus=1, resources={"slot": 1}))
    assert wait_for(lambda: placement_group_table(pg)["state"] == "CREATED", timeout=30)
    assert placement_group_table(pg)["bundles_to_node_id"][1] == replacement.node_id
    # The actor restarts (within max_restarts) in the bundle's new home.
    assert wait_for(lambda: _node_or_none(actor) == replacement.node_id, timeout=30)
    remove_placement_group(pg)
    assert wait_for(no_leak, timeout=10)


def _node_or_none(actor):
    try:
        return skate.get(actor.node.remote(), timeout=5)
    except RayError:
        return None


@skate.remote(num_cpus=1, max_retries=0)
def hang():
    time.sleep(300)


@pytest.mark.timeout(90)
def test_removal_kills_actors_and_tasks_inside_and_frees_everything(fresh):
    skate.init(num_cpus=3)
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    assert pg.wait(10)
    assert skate.available_resources()["CPU"] == 1
    actor = Sleeper.options(scheduling_strategy=in_bundle(pg, 0), max_restarts=3).remote()
    skate.get(actor.node.remote(), timeout=30)
    task = hang.options(scheduling_strategy=in_bundle(pg, 1)).remote()
    assert wait_for(lambda: skate.available_resources().get(f"CPU_group_1_{pg.id.hex()}", 0) == 0, timeout=10)
    remove_placement_group(pg)
    with pytest.raises(RayActorError):  # the kill is on its way when remove returns, as in Ray
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            skate.get(actor.node.remote(), timeout=10)
            time.sleep(0.05)
    with pytest.raises(RayError):
        skate.get(task, timeout=30)
    assert wait_for(no_leak, timeout=10), (skate.available_resources(), skate.cluster_resources())
    assert skate.available_resources()["CPU"] == 3
    assert not any("_group_" in k for k in skate.cluster_resources())
    assert placement_group_table(pg)["state"] == "REMOVED"


@pytest.mark.timeout(60)
def test_tasks_waiting_for_a_removed_group_fail_instead_of_hanging(fresh):
    skate.init(num_cpus=1)
    pg = placement_group([{"CPU": 8}])
    ref = node_of.options(scheduling_strategy=in_bundle(pg, 0)).remote()
    assert skate.wait([ref], timeout=0.5)[0] == []
    remove_placement_group(pg)
    with pytest.raises(RayError, match="removed"):
        skate.get(ref, timeout=30)


@pytest.mark.timeout(90)
def test_groups_die_with_their_job_unless_detached(multinode):
    skate.init(address=multinode.address, namespace="pgs")
    kept = placement_group([{"CPU": 0.5}], name="kept", lifetime="detached")
    placement_group([{"CPU": 0.5}], name="gone")
    assert kept.wait(10)
    skate.shutdown()
    skate.init(address=multinode.address, namespace="pgs")
    assert wait_for(lambda: _named("gone") is None, timeout=10)
    again = get_placement_group("kept")
    assert again.id == kept.id and again.bundle_specs == [{"CPU": 0.5}]
    with pytest.raises(ValueError, match="kept"):
        placement_group([{"CPU": 0.1}], name="kept")  # unique per namespace
    remove_placement_group(again)
    assert wait_for(no_leak, timeout=10)


def _named(name: str):
    try:
        return get_placement_group(name)
    except ValueError:
        return None


@pytest.mark.timeout(60)
def test_bad_groups_reserve_nothing(fresh):
    skate.init(num_cpus=2, namespace="bad")
    named = placement_group([{"CPU": 1}], name="dup")
    with pytest.raises(ValueError, match="dup"):
        placement_group([{"CPU": 1}], name="dup")
    with pytest.raises(ValueError, match="STRICT_PACK"):
        placement_group([{"CPU": 2}, {"CPU": 1}], strategy="STRICT_PACK")
    assert named.wait(10)
    with pytest.raises(ValueError, match="out of range"):
        node_of.options(scheduling_strategy=in_bundle(named, 1)).remote()
    with pytest.raises(ValueError, match="cannot fit"):
        node_of.options(num_cpus=2, scheduling_strategy=in_bundle(named, 0)).remote()
    with pytest.raises(ValueError, match="cannot fit"):
        Sleeper.options(num_cpus=2, placement_group=named).remote()
    assert len(placement_group_table()) == 1
    remove_placement_group(named)
    assert wait_for(no_leak, timeout=10)
    assert skate.available_resources()["CPU"] == 2


@skate.remote(num_cpus=0)
def wait_elsewhere(pg):
    return pg.wait(10), skate.get(pg.ready(), timeout=10) == pg, pg.bundle_specs


@pytest.mark.timeout(60)
def test_a_handle_passed_to_another_process_asks_the_gcs(fresh):
    skate.init(num_cpus=2)
    pg = placement_group([{"CPU": 1}])
    assert skate.get(wait_elsewhere.remote(pg), timeout=30) == (True, True, [{"CPU": 1.0}])
    remove_placement_group(pg)
    assert not pg.wait(1)
    with pytest.raises(RayError, match="not ready"):
        skate.get(pg.ready(), timeout=10)
