"""Moving objects between nodes: a raylet pulls a copy from a raylet that holds one.

The copy is written in chunks straight into the local store, several chunks in flight at
once; concurrent requests for one object share a single transfer. Pulled copies are
secondary: the first thing evicted under memory pressure, since they can be fetched again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger("skate.raylet.objects")

CHUNK = 8 * 1024 * 1024
WINDOW = 4  # chunks in flight per transfer


class ObjectManager:
    def __init__(self, raylet: Any):
        self.raylet = raylet
        self._pulls: dict[bytes, asyncio.Future] = {}
        self._serving: dict[tuple[bytes, str], int] = {}  # (object, puller) -> offset being read
        self.pulled_bytes = 0

    def handlers(self) -> dict:
        return {
            "transfer_begin": self.h_begin,
            "transfer_read": self.h_read,
            "transfer_end": self.h_end,
        }

    # -- serving a copy ---------------------------------------------------------------
    async def h_begin(self, conn, p: dict):
        oid, client = p["oid"], "pull:" + p["client"]
        store = self.raylet.store
        if store.status(oid) == "spilled":
            await self.raylet.spill.ensure_in_memory(oid)
        loc = store.get(oid, client)
        if loc is None:
            return None
        self._serving[(oid, client)] = loc[0]
        return loc[1]

    def h_read(self, conn, p: dict) -> bytes:
        base = self._serving[(p["oid"], "pull:" + p["client"])]
        return bytes(self.raylet.spill.mapping.writable(base + p["offset"], p["length"]))

    def h_end(self, conn, p: dict) -> None:
        key = (p["oid"], "pull:" + p["client"])
        if self._serving.pop(key, None) is not None:
            self.raylet.spill.release_files(self.raylet.store.release(*key))

    # -- fetching a copy --------------------------------------------------------------
    async def pull(self, oid: bytes, node_id: str) -> bool:
        """Make `oid` present here, copying it from `node_id`; False if that is impossible."""
        if self.raylet.store.status(oid) != "missing":
            return True
        fut = self._pulls.get(oid)
        if fut is None:
            fut = asyncio.ensure_future(self._pull(oid, node_id))
            self._pulls[oid] = fut
            fut.add_done_callback(lambda _f: self._pulls.pop(oid, None))
        return await asyncio.shield(fut)

    async def _pull(self, oid: bytes, node_id: str) -> bool:
        raylet = self.raylet
        address = raylet.node_address(node_id)
        if address is None:
            return False
        me = raylet.node_id
        try:
            conn = await raylet.peer(address)
            size = await conn.call("transfer_begin", {"oid": oid, "client": me})
        except Exception as exc:
            logger.warning("cannot pull %s from node %s: %s", oid.hex(), node_id[:12], exc)
            return False
        if size is None:
            return False
        try:
            offset = await raylet.spill.create(oid, size, owner="")
            dest = raylet.spill.mapping
            window = asyncio.Semaphore(WINDOW)

            async def fetch(start: int) -> None:
                async with window:
                    n = min(CHUNK, size - start)
                    data = await conn.call(
                        "transfer_read", {"oid": oid, "client": me, "offset": start, "length": n}
                    )
                    dest.writable(offset + start, n)[:] = data

            await asyncio.gather(*(fetch(start) for start in range(0, size, CHUNK)))
        except Exception as exc:
            logger.warning("pulling %s from node %s failed: %s", oid.hex(), node_id[:12], exc)
            raylet.store.discard_unsealed(oid)
            return False
        finally:
            if not conn.closed:
                conn.notify("transfer_end", {"oid": oid, "client": me})
        raylet.store.seal(oid, secondary=True)
        self.pulled_bytes += size
        return True
