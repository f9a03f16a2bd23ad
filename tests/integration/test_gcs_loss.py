"""A raylet that loses the GCS keeps serving, and registers again when the GCS is back."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

import skate
from skate.cluster_utils import Cluster
from skate.protocol import connect
from tests.integration import _cluster_helpers
from tests.integration._helpers import wait_for

MB = 1024 * 1024
multinode = _cluster_helpers.multinode  # the fixture: a 1-CPU head


def _gcs_process(cluster: Cluster) -> subprocess.Popen:
    return next(p for p in cluster.head_node.processes if "skate.gcs.server" in " ".join(p.args))


async def _alive_nodes(address: str, token: bytes) -> int:
    conn = await connect(address, token, name="probe", timeout=2)
    try:
        return sum(1 for n in await conn.call("get_nodes") if n["alive"])
    finally:
        conn.close()


def test_raylet_keeps_serving_and_reregisters(multinode):
    # A GCS can come back only from durable storage (a `memory` one refuses to restart).
    multinode.shutdown()
    cluster = Cluster(
        initialize_head=True, head_node_args=_cluster_helpers.node_args(num_cpus=1, storage="sqlite")
    )
    multinode.head_node = cluster.head_node
    skate.init(address=cluster.address)

    @skate.remote
    def square(x):
        return x * x

    assert skate.get(square.remote(3), timeout=30) == 9
    gcs = _gcs_process(cluster)
    args = [a for a in gcs.args]
    gcs.kill()
    gcs.wait(10)
    raylet_log = os.path.join(cluster.head_node.session_dir, "logs", "raylet.log")

    def raylet_lost_the_gcs() -> bool:
        with open(raylet_log, errors="replace") as f:
            return "lost the GCS" in f.read()

    assert wait_for(raylet_lost_the_gcs), "the raylet never noticed the GCS is gone"
    # The raylet still leases its one worker, which already knows the function.
    assert skate.get(square.remote(4), timeout=30) == 16
    # A GCS started again at the same address sees the node come back.
    watch = args.index("--watch-fd")
    restarted = subprocess.Popen(
        args[:watch] + args[watch + 2 :],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    cluster.head_node.processes.insert(0, restarted)
    head = cluster.head_node
    deadline = time.monotonic() + 15
    count = 0
    while time.monotonic() < deadline:
        try:
            count = asyncio.run(_alive_nodes(head.gcs_address, head.token))
        except Exception:
            count = 0
        if count == 1:
            break
        time.sleep(0.2)
    assert count == 1
