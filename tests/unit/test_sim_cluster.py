"""The simulated large cluster (issue 19) at tiny sizes, and the placement index it led to."""

from __future__ import annotations

import asyncio
import random

import pytest

from skate import _sim_cluster as sim
from skate.gcs.actor_manager import ALIVE, DEAD
from skate.gcs.placement import NodeLoad, PlacementIndex, choose_node
from skate.raylet import resources as res

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def cluster():
    c = sim.new_cluster()
    yield c
    c.close()


def test_every_actor_is_placed_on_a_node_with_room(cluster):
    sim.add_nodes(cluster, 5)
    sim.add_actors(cluster, 200)
    actors = cluster.gcs.actors.actors
    assert len(actors) == 200
    for info in actors.values():
        assert info.state == ALIVE
        raylet = cluster.raylets[info.node_id]
        assert info.lease is not None and info.lease[1] in raylet.scheduler.leases
    per_node = {nid: 0 for nid in cluster.raylets}
    for info in actors.values():
        per_node[info.node_id] += 1
    assert sorted(per_node.values()) == [40] * 5  # default actors count as load: they spread
    for raylet in cluster.raylets.values():
        assert all(v >= 0 for v in raylet.scheduler.available.values())


def test_actors_holding_cpus_never_overfill_a_node(cluster):
    sim.add_nodes(cluster, 5)  # 4 CPUs each
    sim.add_actors(cluster, 20, hold={"CPU": 1})
    for raylet in cluster.raylets.values():
        assert raylet.scheduler.available.get("CPU", 0) == 0
        assert len(raylet.scheduler.leases) == 4

    async def one_more():
        register, create = sim._actor_payloads(999, [sim.DRIVER, ""], {"CPU": 1}, {"CPU": 1})
        cluster.gcs.actors.h_register(sim.as_conn(cluster.driver), register)
        fut = cluster.gcs.actors.h_create(sim.as_conn(cluster.driver), create)
        done, _ = await asyncio.wait([fut], timeout=0.2)
        return done

    assert not cluster.run(one_more())  # no room anywhere: it waits, no node goes over
    for raylet in cluster.raylets.values():
        assert raylet.scheduler.available.get("CPU", 0) >= 0


def test_placement_group_bundles_follow_their_strategy(cluster):
    sim.add_nodes(cluster, 5)
    sim.add_groups(cluster, 10, bundle_cpu=0.25)
    groups = cluster.gcs.pgs.groups.values()
    assert len(groups) == 10
    for info in groups:
        assert info.state == "CREATED" and len(info.placement) == 4
        nodes = set(info.placement.values())
        assert len(nodes) == (1 if info.strategy == "PACK" else 4), info.strategy
    for raylet in cluster.raylets.values():  # bundles reserved, never more than a node has
        assert raylet.scheduler.available.get("CPU", 0) >= 0


def test_a_dead_node_takes_its_actors_load_out_of_placement(cluster):
    sim.add_nodes(cluster, 3)
    sim.add_actors(cluster, 30)
    gone = sim.node_id_of(1)
    cluster.gcs.mark_node_dead(gone, "test")
    index = cluster.gcs.placement
    assert gone not in index.nodes and gone not in index.loads()
    assert all(i.state == DEAD for i in cluster.gcs.actors.actors.values() if i.node_id == gone)
    placed = sum(p.get("CPU", 0) for p, _ in index.loads().values())
    alive = sum(1 for i in cluster.gcs.actors.actors.values() if i.state != DEAD)
    assert placed == alive * res.UNIT


def test_table_has_the_named_columns():
    row = sim.run(5, 200, groups=10, lease_rounds=20)
    assert tuple(row) == sim.COLUMNS
    assert row["actors"] == 200 and row["actor placement (actors/s)"] > 0
    text = sim.table([row])
    header = text.splitlines()[0]
    assert all(column in header for column in sim.COLUMNS)
    assert len(text.splitlines()) == 3


def test_cli_caps_actors_per_node():
    assert sim.actors_for(10, 100_000, 100) == 1000
    assert sim.actors_for(1000, 100_000, 100) == 100_000


# -- the placement index answers as choose_node does --------------------------------------
def _random_node(rng: random.Random, i: int) -> tuple[str, dict[str, int], dict[str, int]]:
    total = {"CPU": rng.choice([1, 2, 4, 8]) * res.UNIT}
    if rng.random() < 0.2:
        total["GPU"] = rng.choice([1, 2]) * res.UNIT
    if rng.random() < 0.2:
        total["blue"] = res.UNIT
    available = {k: rng.randint(-1, v // res.UNIT) * res.UNIT for k, v in total.items()}
    return f"n{i:03d}", total, available


@pytest.mark.parametrize("seed", range(20))
def test_index_matches_choose_node(seed):
    rng = random.Random(seed)
    index = PlacementIndex()
    shapes = [
        {"CPU": res.UNIT},
        {"CPU": 2 * res.UNIT},
        {"GPU": res.UNIT},
        {"CPU": res.UNIT, "blue": res.UNIT},
        {"CPU": 16 * res.UNIT},
    ]
    ids = []
    for step in range(300):
        event = rng.random()
        if event < 0.15 or not ids:
            nid, total, available = _random_node(rng, rng.randint(0, 40))
            index.set_node(nid, total, available)
            if nid not in ids:
                ids.append(nid)
        elif event < 0.2:
            nid = ids.pop(rng.randrange(len(ids)))
            index.remove_node(nid)
        else:
            shape = rng.choice(shapes)
            preferred = rng.choice(ids + [None])
            threshold = rng.choice([0.5, 0.0])
            views = [
                NodeLoad(n.node_id, n.total, n.available, dict(n.actors_placed), dict(n.actors_held))
                for n in index.nodes.values()
            ]
            expected = choose_node(shape, views, preferred, threshold=threshold)
            assert index.choose(shape, preferred, threshold) == expected, step
            if expected is not None:
                hold = shape if rng.random() < 0.5 else {}
                index.add_actor(expected, shape, hold)
                if rng.random() < 0.2:
                    index.remove_actor(expected, shape, hold)


def test_index_looks_at_few_nodes_when_the_best_has_room():
    index = PlacementIndex()
    for i in range(1000):
        index.set_node(f"n{i:04d}", {"CPU": 4 * res.UNIT}, {"CPU": 4 * res.UNIT})
    looked: list[str] = []

    def usable(nid: str) -> bool:
        looked.append(nid)
        return True

    for _ in range(100):
        looked.clear()
        chosen = index.choose({"CPU": res.UNIT}, None, usable=usable)
        assert chosen is not None and len(looked) <= 2
        index.add_actor(chosen, {"CPU": res.UNIT}, {})
