"""Reading a running cluster from outside it: for `skate memory` and `skate status`.

A cluster on this machine is found through its session directory (cluster.json and the
0600 token); the newest one whose GCS answers is used unless --address names one.
"""

from __future__ import annotations

import asyncio
import json
import os

from skate._node import default_temp_root, owned_sessions
from skate._secure_files import read_token
from skate.protocol import connect


def find_sessions(address: str | None = None, shared_only: bool = False) -> list[dict]:
    """Session directories of head nodes on this machine, newest first; only the one at
    `address` if given; only clusters meant to be joined (`skate start`, cluster_utils) if
    shared_only."""
    found = []
    for session in owned_sessions():  # sessions of other users, or left open, are never trusted
        path = os.path.join(session, "cluster.json")
        try:
            with open(path) as f:
                info = json.load(f)
            info["token"] = read_token(session)
        except (OSError, ValueError):
            continue
        info["session_dir"] = session
        if not info.get("head", True) or (shared_only and not info.get("shared")):
            continue
        if address and info["gcs_address"].replace("tcp://", "") != address.replace("tcp://", ""):
            continue
        found.append((os.path.getmtime(path), info))
    return [info for _, info in sorted(found, key=lambda pair: -pair[0])]


async def _query(info: dict, want_objects: bool) -> tuple[list[dict], list[dict], dict]:
    gcs = await connect(info["gcs_address"], info["token"], name="cli-gcs", timeout=3)
    try:
        nodes = await gcs.call("get_nodes")
        groups = {} if want_objects else await gcs.call("placement_group_table", {})
        reports = []
        for node in nodes:
            if not node["alive"]:
                continue
            raylet = await connect(node["address"], info["token"], name="cli-raylet", timeout=3)
            try:
                if want_objects:
                    reports.append(await raylet.call("list_objects", {}))
                else:
                    reports.append({"store": await raylet.call("store_stats", {}), "objects": []})
            finally:
                raylet.close()
        return nodes, reports, groups
    finally:
        gcs.close()


async def _gcs_info(info: dict) -> dict:
    gcs = await connect(info["gcs_address"], info["token"], name="cli-gcs", timeout=3)
    try:
        return await gcs.call("gcs_info", {})
    finally:
        gcs.close()


def query_gcs_info(address: str | None) -> dict | None:
    """The newest reachable cluster's GCS: storage, start history, table sizes (None if none answers)."""
    for info in find_sessions(address):
        try:
            return asyncio.run(_gcs_info(info))
        except Exception:
            continue
    return None


async def _memory(info: dict) -> dict:
    from skate.util.memory_stats import gather

    gcs = await connect(info["gcs_address"], info["token"], name="cli-gcs", timeout=3)

    async def connect_node(node: dict):
        raylet = await connect(node["address"], info["token"], name="cli-raylet", timeout=3)
        return raylet, raylet.close

    try:
        return await gather(gcs, connect_node)
    finally:
        gcs.close()


def query_memory(address: str | None) -> dict:
    """The memory report (skate.util.memory_stats) of the newest reachable cluster;
    ConnectionError if none."""
    errors = []
    for info in find_sessions(address):
        try:
            return asyncio.run(_memory(info))
        except Exception as exc:
            errors.append(f"{info['session_dir']}: {exc}")
    where = f"at {address}" if address else f"under {default_temp_root()}"
    raise ConnectionError(
        f"no running Skate cluster found {where} ({'; '.join(errors) or 'no session directory found'})"
    )


def query_cluster(address: str | None, want_objects: bool) -> tuple[list[dict], list[dict], dict]:
    """(nodes, per-node reports, placement-group table by id; empty with want_objects) of the
    newest reachable cluster; ConnectionError if none."""
    errors = []
    for info in find_sessions(address):
        try:
            return asyncio.run(_query(info, want_objects))
        except Exception as exc:  # a stale session of a dead cluster: try the next one
            errors.append(f"{info['session_dir']}: {exc}")
    where = f"at {address}" if address else f"under {default_temp_root()}"
    detail = ("; ".join(errors)) if errors else "no session directory found"
    raise ConnectionError(f"no running Skate cluster found {where} ({detail})")


async def _local_raylet(session: dict) -> dict:
    gcs = await connect(session["gcs_address"], session["token"], name="driver-probe", timeout=5)
    try:
        nodes = await gcs.call("get_nodes")
    finally:
        gcs.close()
    alive = [n for n in nodes if n["alive"]]
    local = [n for n in alive if os.path.exists(n["address"].split("|")[0].replace("unix://", ""))]
    if not local:
        raise ConnectionError("no node of this cluster runs on this machine")
    local.sort(key=lambda n: (not n.get("is_head"), n.get("start_time", 0)))
    return local[0]


def local_raylet(session: dict) -> dict:
    """The GCS's record of a raylet running on this machine (the head's if it is here)."""
    return asyncio.run(_local_raylet(session))
