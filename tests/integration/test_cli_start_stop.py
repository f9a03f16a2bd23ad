"""`skate start --head`, `skate start --address`, `skate status` and `skate stop`, as subprocesses."""

from __future__ import annotations

import json
import re

import skate
from tests.integration._cluster_helpers import (
    STORE,
    force_stop_cli,
    free_port,
    run_cli,
    session_dirs,
    shm_files,
    temp_root,
    wait_gone,
)
from tests.integration._helpers import wait_for


def _start_head(port: int):
    return run_cli(
        "start", "--head", "--port", str(port), "--num-cpus", "1", "--object-store-memory", str(STORE)
    )


def _join(address: str, *extra: str, env: dict | None = None, timeout: float = 60):
    return run_cli(
        "start",
        "--address",
        address,
        "--num-cpus",
        "1",
        "--object-store-memory",
        str(STORE),
        *extra,
        env=env,
        timeout=timeout,
    )


def test_start_join_status_stop_round_trip():
    port = free_port()
    address = f"127.0.0.1:{port}"
    try:
        head = _start_head(port)
        assert head.returncode == 0, head.stderr
        # The head says where the cluster is, how to add a node and how to connect a driver.
        assert address in head.stdout
        assert f"--address {address}" in head.stdout
        assert "skate.init(address=" in head.stdout
        assert "skate stop" in head.stdout

        worker = _join(address, "--resources", json.dumps({"red": 1}))
        assert worker.returncode == 0, worker.stderr
        assert "joined" in worker.stdout and address in worker.stdout

        skate.init(address="auto")
        alive = [n for n in skate.nodes() if n["Alive"]]
        assert len(alive) == 2, alive
        red_nodes = [n["NodeID"] for n in alive if n["Resources"].get("red") == 1]
        assert len(red_nodes) == 1
        head_node = [n["NodeID"] for n in alive if "node:__internal_head__" in n["Resources"]]
        assert len(head_node) == 1 and head_node != red_nodes
        assert skate.cluster_resources()["CPU"] == 2
        assert skate.get_runtime_context().get_node_id() == head_node[0]  # the driver's local raylet

        @skate.remote(resources={"red": 1})
        def where():
            return skate.get_runtime_context().get_node_id()

        assert skate.get(where.remote(), timeout=60) == red_nodes[0]

        @skate.remote(resources={"red": 1}, num_cpus=0)
        class Holder:
            def ping(self):
                return skate.get_runtime_context().get_node_id()

        holder = Holder.remote()  # holds red on the worker node while it lives
        assert skate.get(holder.ping.remote(), timeout=60) == red_nodes[0]

        def status_shows_use():
            out = run_cli("status", "--address", address)
            return out if out.returncode == 0 and re.search(r"red: 1 / 1\b", out.stdout) else None

        status = wait_for(status_shows_use, timeout=10, interval=0.3)
        assert status, run_cli("status", "--address", address).stdout
        text = status.stdout
        for nid in head_node + red_nodes:
            assert f"{nid[:12]} (alive)" in text, text
        assert len(re.findall(r"^\s+CPU: [\d.]+ / 1$", text, flags=re.M)) == 2, text
        skate.shutdown()

        stop = run_cli("stop")
        assert stop.returncode == 0, stop.stderr
        assert "stopped head" in stop.stdout and "stopped node" in stop.stdout, stop.stdout
        assert wait_gone(temp_root()) == []
        assert session_dirs(temp_root()) == []
        assert shm_files() == []
        again = run_cli("stop")
        assert again.returncode == 0 and "no Skate nodes were running" in again.stdout
    finally:
        force_stop_cli()


def test_status_without_cluster_fails_clearly():
    out = run_cli("status")
    assert out.returncode != 0
    assert "no running Skate cluster" in out.stderr
    assert "Traceback" not in out.stderr


def test_stop_with_nothing_running():
    out = run_cli("stop")
    assert out.returncode == 0
    assert "no Skate nodes were running" in out.stdout


def test_two_joined_nodes_and_driver_by_explicit_address():
    port = free_port()
    address = f"127.0.0.1:{port}"
    try:
        assert _start_head(port).returncode == 0
        for color in ("red", "blue"):
            out = _join(address, "--resources", json.dumps({color: 1}))
            assert out.returncode == 0, out.stderr
        skate.init(address=address)
        alive = [n for n in skate.nodes() if n["Alive"]]
        assert len(alive) == 3

        @skate.remote
        def where():
            return skate.get_runtime_context().get_node_id()

        red = skate.get(where.options(resources={"red": 1}).remote(), timeout=60)
        blue = skate.get(where.options(resources={"blue": 1}).remote(), timeout=60)
        by_id = {n["NodeID"]: n for n in alive}
        assert by_id[red]["Resources"]["red"] == 1
        assert by_id[blue]["Resources"]["blue"] == 1
        skate.shutdown()
        stop = run_cli("stop")
        assert stop.stdout.count("stopped") == 3, stop.stdout
        assert wait_gone(temp_root()) == []
        assert session_dirs(temp_root()) == []
    finally:
        force_stop_cli()
