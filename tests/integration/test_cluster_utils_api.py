"""skate.cluster_utils.Cluster: Ray's API for several nodes on one machine."""

from __future__ import annotations

import os

import pytest

import skate
from skate.cluster_utils import Cluster
from tests.integration._cluster_helpers import (
    STORE,
    node_args,
    node_is_alive,
    session_dirs,
    shm_files,
    temp_root,
    wait_gone,
)
from tests.integration._helpers import wait_for


def test_cluster_lifecycle_and_handles(fresh):
    cluster = Cluster(initialize_head=True, head_node_args=node_args(num_cpus=1))
    try:
        host, _, port = cluster.address.rpartition(":")
        assert host == "127.0.0.1" and port.isdigit() and int(port) > 0
        assert "://" not in cluster.address
        head = cluster.head_node
        assert head is not None and len(head.node_id) == 28
        nodes = [cluster.add_node(**node_args(num_cpus=1, resources={"n": i + 1})) for i in range(2)]
        assert len({head.node_id, *(n.node_id for n in nodes)}) == 3
        assert cluster.list_all_nodes() == [head, *nodes]
        cluster.wait_for_nodes(timeout=10)
        assert len(session_dirs(temp_root())) == 3  # one session directory per node
        assert len(shm_files()) == 3  # one object store per node

        skate.init(address=cluster.address)
        by_id = {n["NodeID"]: n for n in skate.nodes()}
        assert set(by_id) == {head.node_id, *(n.node_id for n in nodes)}
        assert all(n["Alive"] for n in by_id.values())
        assert by_id[nodes[1].node_id]["Resources"]["n"] == 2
        assert by_id[head.node_id]["Resources"]["object_store_memory"] == STORE

        cluster.remove_node(nodes[0])
        assert cluster.list_all_nodes() == [head, nodes[1]]
        cluster.wait_for_nodes(timeout=10)  # waits for the GCS to see the removed node dead
        assert node_is_alive(nodes[0].node_id) is False
        assert len(session_dirs(temp_root())) == 2
        skate.shutdown()
    finally:
        if skate.is_initialized():
            skate.shutdown()
        cluster.shutdown()
    assert cluster.head_node is None and cluster.worker_nodes == []
    assert wait_gone(temp_root()) == []
    assert session_dirs(temp_root()) == []
    assert shm_files() == []


def test_cluster_connect_true_starts_a_driver(fresh):
    cluster = Cluster(initialize_head=True, connect=True, head_node_args=node_args(num_cpus=2))
    try:
        assert skate.is_initialized()
        assert skate.cluster_resources()["CPU"] == 2
        assert skate.get_runtime_context().get_node_id() == cluster.head_node.node_id
    finally:
        skate.shutdown()
        cluster.shutdown()


def test_cluster_without_head_then_add_node_makes_the_head(fresh):
    cluster = Cluster()
    try:
        with pytest.raises(RuntimeError):
            _ = cluster.address
        head = cluster.add_node(**node_args(num_cpus=1))
        assert cluster.head_node is head
        worker = cluster.add_node(**node_args(num_cpus=1))
        assert cluster.worker_nodes == [worker]
        skate.init(address=cluster.address)
        head_info = {n["NodeID"]: n for n in skate.nodes()}[head.node_id]
        assert "node:__internal_head__" in head_info["Resources"]
    finally:
        if skate.is_initialized():
            skate.shutdown()
        cluster.shutdown()


def test_add_node_rejects_unknown_options(fresh):
    cluster = Cluster(initialize_head=True, head_node_args=node_args(num_cpus=1))
    try:
        before = len(session_dirs(temp_root()))
        with pytest.raises(ValueError, match="no_such_option"):
            cluster.add_node(no_such_option=1)
        assert len(session_dirs(temp_root())) == before  # nothing was started
        assert cluster.worker_nodes == []
    finally:
        cluster.shutdown()
    with pytest.raises(ValueError):
        Cluster(initialize_head=True, head_node_args={"bogus": True})
    assert session_dirs(temp_root()) == []


@pytest.mark.parametrize("option", ["num_cpus", "num_gpus", "object_store_memory"])
def test_add_node_rejects_negative_amounts(fresh, option):
    cluster = Cluster(initialize_head=True, head_node_args=node_args(num_cpus=1))
    try:
        before = len(session_dirs(temp_root()))
        with pytest.raises(ValueError, match=option):
            cluster.add_node(**node_args(**{option: -1}))
        assert len(session_dirs(temp_root())) == before
        assert cluster.worker_nodes == []
    finally:
        cluster.shutdown()


def test_add_node_wait_false_then_wait_for_nodes(fresh):
    cluster = Cluster(initialize_head=True, head_node_args=node_args(num_cpus=1))
    try:
        late = cluster.add_node(wait=False, **node_args(num_cpus=1, resources={"late": 1}))
        cluster.wait_for_nodes(timeout=10)
        skate.init(address=cluster.address)
        assert node_is_alive(late.node_id) is True

        @skate.remote(resources={"late": 1})
        def where():
            return skate.get_runtime_context().get_node_id()

        assert skate.get(where.remote(), timeout=60) == late.node_id
    finally:
        if skate.is_initialized():
            skate.shutdown()
        cluster.shutdown()


def test_remove_node_without_grace_and_shutdown_leaves_nothing(fresh):
    cluster = Cluster(initialize_head=True, head_node_args=node_args(num_cpus=1))
    try:
        node = cluster.add_node(**node_args(num_cpus=1))
        session = node.session_dir
        pids = [p.pid for p in node.processes]
        skate.init(address=cluster.address)
        cluster.remove_node(node, allow_graceful=False)
        assert wait_for(lambda: node_is_alive(node.node_id) is False, timeout=5)
        assert not os.path.exists(session)
        assert wait_gone(session, timeout=5) == [], pids  # its zygote and workers follow the raylet
    finally:
        if skate.is_initialized():
            skate.shutdown()
        cluster.shutdown()
    assert wait_gone(temp_root()) == []
    assert shm_files() == []


def test_shutdown_with_a_driver_still_connected_stops_everything(fresh):
    cluster = Cluster(initialize_head=True, head_node_args=node_args(num_cpus=1))
    cluster.add_node(**node_args(num_cpus=1))
    try:
        skate.init(address=cluster.address)

        @skate.remote
        def one():
            return 1

        assert skate.get(one.remote(), timeout=60) == 1
    finally:
        cluster.shutdown()  # before the driver disconnects
        skate.shutdown()
    assert wait_gone(temp_root()) == []
    assert session_dirs(temp_root()) == []
