"""get_runtime_context, nodes, cluster_resources and available_resources on a real cluster."""

from __future__ import annotations

import os

import pytest

import skate


def test_runtime_context_in_the_driver(cluster):
    ctx = skate.get_runtime_context()
    job_id = ctx.get_job_id()
    assert isinstance(job_id, str) and job_id
    with pytest.warns(DeprecationWarning):  # as Ray: the properties give ID objects
        assert ctx.job_id.hex() == job_id
    node_id = ctx.get_node_id()
    assert isinstance(node_id, str) and node_id
    with pytest.warns(DeprecationWarning):
        assert ctx.node_id.hex() == node_id
    assert isinstance(ctx.namespace, str) and ctx.namespace
    assert ctx.get_task_id() is None
    with pytest.warns(DeprecationWarning):
        assert ctx.task_id is None
    assert ctx.get_actor_id() is None
    assert [n["NodeID"] for n in skate.nodes()] == [node_id]


@skate.remote
def context_in_task():
    ctx = skate.get_runtime_context()
    return {
        "job": ctx.get_job_id(),
        "node": ctx.get_node_id(),
        "task": ctx.get_task_id(),
        "ns": ctx.namespace,
        "res": ctx.get_assigned_resources(),
        "pid": os.getpid(),
    }


def test_runtime_context_in_a_task(cluster):
    driver = skate.get_runtime_context()
    a = skate.get(context_in_task.options(num_cpus=2).remote(), timeout=30)
    b = skate.get(context_in_task.remote(), timeout=30)
    c = skate.get(context_in_task.options(num_cpus=0.5, resources={"custom": 1}).remote(), timeout=30)
    assert a["job"] == driver.get_job_id()
    assert a["node"] == driver.get_node_id()
    assert a["ns"] == driver.namespace
    assert isinstance(a["task"], str) and a["task"]
    assert a["task"] != b["task"]
    assert a["res"] == {"CPU": 2.0}
    assert b["res"] == {"CPU": 1.0}
    assert c["res"] == {"CPU": 0.5, "custom": 1.0}
    assert a["pid"] != os.getpid()


def test_task_ids_differ_per_task_and_nested(cluster):
    @skate.remote
    def outer():
        mine = skate.get_runtime_context().get_task_id()
        child = skate.get(context_in_task.remote(), timeout=30)["task"]
        return mine, child

    mine, child = skate.get(outer.remote(), timeout=30)
    assert mine and child and mine != child


def test_nodes(cluster):
    nodes = skate.nodes()
    assert len(nodes) == 1
    node = nodes[0]
    assert node["Alive"] is True
    assert node["NodeID"] == skate.get_runtime_context().get_node_id()
    assert node["Resources"]["CPU"] == 4
    assert node["Resources"]["custom"] == 2
    assert isinstance(node["NodeManagerAddress"], str) and node["NodeManagerAddress"]


def test_cluster_resources(cluster):
    total = skate.cluster_resources()
    assert total["CPU"] == 4
    assert total["custom"] == 2
    assert "GPU" not in total
    assert total.get("object_store_memory", 0) > 0
    assert total.get("memory", 0) > 0
    assert all(isinstance(v, float) for v in total.values())


def test_available_resources(cluster):
    avail = skate.available_resources()
    assert 0 <= avail.get("CPU", 0) <= 4
    assert avail.get("custom", 0) <= 2
    assert set(avail) <= set(skate.cluster_resources())


def test_runtime_context_get_dict(cluster):
    info = skate.get_runtime_context().get()
    assert info["job_id"] == skate.get_runtime_context().get_job_id()
    assert info["node_id"] == skate.get_runtime_context().get_node_id()
    assert "task_id" not in info  # as Ray: the driver runs no task


def test_get_gpu_ids_is_empty_without_gpus(cluster):
    assert skate.get_gpu_ids() == []

    @skate.remote
    def gpus():
        return skate.get_gpu_ids()

    assert skate.get(gpus.remote(), timeout=30) == []
