"""Moving objects between nodes: a raylet pulls a copy from a raylet that holds one.

The request goes over the raylets' authenticated connection and returns a one-time
ticket; the bytes then flow over a plain socket to the holder's data port: the holder
sends straight from its shared memory, the puller receives straight into its own (no
intermediate copies, no framing), so a transfer runs near the link's speed. Concurrent
requests for one object share a single transfer. Pulled copies are secondary: the first
thing evicted under memory pressure, since they can be fetched again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any

from skate.protocol.transport import choose_address, parse_address

logger = logging.getLogger("skate.raylet.objects")

TICKET_BYTES = 32
TICKET_TTL_S = 30.0


class ObjectManager:
    def __init__(self, raylet: Any):
        self.raylet = raylet
        self._pulls: dict[bytes, asyncio.Future] = {}
        self._tickets: dict[bytes, tuple[bytes, str, float]] = {}  # ticket -> (object, pin client, expiry)
        self.pulled_bytes = 0
        self.data_addresses: list[str] = []
        self._servers: list = []

    def handlers(self) -> dict:
        return {"transfer_begin": self.h_begin}

    async def start(self, session_dir: str, bind_ip: str, node_ip: str) -> None:
        """Listen for data connections on a Unix socket and a TCP port."""
        loop = asyncio.get_running_loop()
        path = os.path.join(session_dir, "sockets", f"data-{self.raylet.node_id[:8]}.sock")
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(path)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((bind_ip, 0))
        for sock in (unix, tcp):
            sock.listen(64)
            sock.setblocking(False)
            self._servers.append(sock)
            loop.create_task(self._accept_loop(sock))
        self.data_addresses = [f"unix://{path}", f"tcp://{node_ip}:{tcp.getsockname()[1]}"]

    def close(self) -> None:
        for sock in self._servers:
            sock.close()
        for address in self.data_addresses:
            scheme, loc = parse_address(address)
            if scheme == "unix":
                try:
                    os.unlink(loc)
                except OSError:
                    pass

    # -- serving a copy ---------------------------------------------------------------
    async def h_begin(self, conn, p: dict):
        """Pin the object for a puller; returns its size, a ticket and where to fetch it."""
        oid = p["oid"]
        store = self.raylet.store
        if store.status(oid) == "spilled":
            await self.raylet.spill.ensure_in_memory(oid)
        ticket = os.urandom(TICKET_BYTES)
        client = "pull:" + ticket.hex()
        loc = store.get(oid, client)
        if loc is None:
            return None
        self._tickets[ticket] = (oid, client, time.monotonic() + TICKET_TTL_S)
        asyncio.get_running_loop().call_later(TICKET_TTL_S, self._expire, ticket)
        return {"size": loc[1], "ticket": ticket, "address": "|".join(self.data_addresses)}

    def _expire(self, ticket: bytes) -> None:
        entry = self._tickets.pop(ticket, None)
        if entry is not None:
            self.raylet.spill.release_files(self.raylet.store.release(entry[0], entry[1]))

    async def _accept_loop(self, server: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(server)
            except OSError:
                return
            loop.create_task(self._serve(sock))

    async def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            sock.setblocking(False)
            ticket = b""
            while len(ticket) < TICKET_BYTES:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, TICKET_BYTES - len(ticket)), 10)
                if not chunk:
                    return
                ticket += chunk
            entry = self._tickets.pop(ticket, None)
            if entry is None:
                logger.warning("data connection with an unknown ticket: closed")
                return
            oid, client, _ = entry
            obj = self.raylet.store.objects.get(oid)
            try:
                if obj is not None and obj.offset is not None:
                    view = self.raylet.spill.mapping.writable(obj.offset, obj.size)
                    await loop.sock_sendall(sock, view)
            finally:
                self.raylet.spill.release_files(self.raylet.store.release(oid, client))
        except (OSError, asyncio.TimeoutError) as exc:
            logger.info("data connection failed: %s", exc)
        finally:
            sock.close()

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
        try:
            conn = await raylet.peer(address)
            offer = await conn.call("transfer_begin", {"oid": oid})
        except Exception as exc:
            logger.warning("cannot pull %s from node %s: %s", oid.hex(), node_id[:12], exc)
            return False
        if offer is None:
            return False
        size = offer["size"]
        try:
            offset = await raylet.spill.create(oid, size, owner="")
            dest = raylet.spill.mapping.writable(offset, size)
            await asyncio.get_running_loop().run_in_executor(
                None, _receive, choose_address(offer["address"]), offer["ticket"], dest
            )
        except Exception as exc:
            logger.warning("pulling %s from node %s failed: %s", oid.hex(), node_id[:12], exc)
            raylet.store.discard_unsealed(oid)
            return False
        raylet.store.seal(oid, secondary=True)
        self.pulled_bytes += size
        return True


def _receive(address: str, ticket: bytes, dest: memoryview) -> None:
    """Blocking: fetch an object's bytes straight into `dest` (runs on a thread)."""
    scheme, loc = parse_address(address)
    if scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: Any = loc
    else:
        host, _, port = loc.rpartition(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        target = (host.strip("[]"), int(port))
    with sock:
        sock.settimeout(60)
        sock.connect(target)
        sock.sendall(ticket)
        pos, size = 0, len(dest)
        while pos < size:
            n = sock.recv_into(dest[pos:], min(size - pos, 64 * 1024 * 1024))
            if n == 0:
                raise ConnectionError(f"the sender closed after {pos} of {size} bytes")
            pos += n
