"""Work placed in "any bundle" and work placed in a given bundle share the group's budget."""

from __future__ import annotations

import pytest

import skate
from skate.util.placement_group import placement_group, remove_placement_group
from skate.util.scheduling_strategies import PlacementGroupSchedulingStrategy


@skate.remote(num_cpus=1)
class Holder:
    def ping(self) -> bool:
        return True


@skate.remote(num_cpus=1)
def one() -> int:
    return 1


@pytest.mark.timeout(60)
def test_any_bundle_actor_and_indexed_task_cannot_overcommit_a_group():
    skate.init(num_cpus=2)
    try:
        pg = placement_group([{"CPU": 1}])
        assert pg.wait(timeout_seconds=20)
        holder = Holder.options(
            scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=-1)
        ).remote()
        assert skate.get(holder.ping.remote(), timeout=20)
        # The bundle's one CPU is held by the actor: a task for bundle 0 must wait for it.
        ref = one.options(
            scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0)
        ).remote()
        ready, _ = skate.wait([ref], timeout=1.5)
        assert ready == [], "a task in bundle 0 ran while an any-bundle actor held the bundle's CPU"
        skate.kill(holder)
        assert skate.get(ref, timeout=20) == 1
        remove_placement_group(pg)
    finally:
        skate.shutdown()
