"""Placement groups: reserve a gang of resources, then run tasks and an actor inside it.

Run with: python examples/placement_groups.py
"""

import skate as ray  # Skate speaks Ray's API
from skate.util.placement_group import (
    get_current_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from skate.util.scheduling_strategies import PlacementGroupSchedulingStrategy


@ray.remote(num_cpus=1)
def where(i):
    group = get_current_placement_group()
    return i, group.id.hex()[:8] if group else None


@ray.remote(num_cpus=1)
class Worker:
    def hello(self):
        return "hello from bundle 1"


def main():
    ray.init(num_cpus=4)
    # Two bundles of one CPU each, on as few nodes as possible.
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK")
    ray.get(pg.ready())
    print("state:", placement_group_table(pg)["state"])
    print("CPUs left outside the group:", ray.available_resources().get("CPU"))

    in_bundle_0 = PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=0)
    print("task:", ray.get(where.options(scheduling_strategy=in_bundle_0).remote(0)))

    in_bundle_1 = PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=1)
    worker = Worker.options(scheduling_strategy=in_bundle_1).remote()
    print("actor:", ray.get(worker.hello.remote()))

    # Removing the group kills its actor and gives its CPUs back.
    remove_placement_group(pg)
    ray.shutdown()


if __name__ == "__main__":
    main()
