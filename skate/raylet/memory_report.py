"""The raylet's memory report (`memory_report` request): its own memory, its zygote's, each
worker's and driver's on this node, and what holds the store's memory.

The raylet knows every process of its node (the clients registered with it, their pids) and
the arena, so it reads them here; the arithmetic is skate._memory_accounting's. The OS is read
on a thread, so the event loop keeps serving while /proc is parsed.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from skate import _memory_accounting as acct
from skate._process_memory import read_process

INFO_TIMEOUT_S = 5.0


def handlers(raylet: Any) -> dict[str, Any]:
    return {"memory_report": lambda conn, p: memory_report(raylet)}


def _store_objects(raylet: Any) -> list[dict]:
    from skate.raylet.object_store import SPILLER

    return [
        {
            "size": o.size,
            "in_memory": o.offset is not None,
            "sealed": o.sealed,
            "secondary": o.secondary,
            "freed": o.freed,
            "readers": sum(n for client, n in o.pins.items() if client != SPILLER),
        }
        for o in list(raylet.store.objects.values())
    ]


def _role_and_name(peer: dict, info: Any) -> tuple[str, str | None]:
    """A client's role (driver, worker, actor) and what it runs, from process_info."""
    if peer.get("mode") != "worker":
        return peer.get("mode") or "driver", None
    if not isinstance(info, dict):
        return "worker", None
    if info.get("actor_class"):
        return "actor", info["actor_class"]
    running = info.get("running") or []
    return "worker", ", ".join(running) if running else info.get("last_call")


async def memory_report(raylet: Any) -> dict:
    clients = [c for c in raylet.clients.values() if not c.closed]

    async def info(conn: Any) -> Any:
        if conn.peer_info.get("mode") != "worker":
            return None
        return await asyncio.wait_for(conn.call("process_info"), INFO_TIMEOUT_S)

    infos = await asyncio.gather(*(info(c) for c in clients), return_exceptions=True)
    who = [(c.peer_info.get("pid"), *_role_and_name(c.peer_info, i)) for c, i in zip(clients, infos)]
    zygote = raylet.zygote.process
    if zygote is not None and zygote.poll() is None:
        who.append((zygote.pid, "zygote", None))
    arena = raylet.arena_path

    def read_all() -> tuple[dict | None, list[tuple[dict | None, str, str | None]]]:
        return read_process(os.getpid(), arena), [
            (read_process(pid, arena), r, n) for pid, r, n in who if pid
        ]

    own, readings = await asyncio.get_running_loop().run_in_executor(None, read_all)
    raylet_fig = acct.process_figures(own or {"pid": os.getpid()}, "raylet")
    processes = [acct.process_figures(r, role, name) for r, role, name in readings if r is not None]
    stats = raylet.store_stats()
    store = acct.store_breakdown(_store_objects(raylet), stats)
    return acct.node_report(raylet.node_id, raylet_fig, processes, store)
