"""Moving objects between nodes: a raylet pulls a copy from a raylet that holds one.

The request goes over the raylets' authenticated connection and returns a one-time
ticket; the bytes then flow over a plain socket to the holder's data port: the holder
sends straight from its shared memory, the puller receives straight into its own (no
intermediate copies, no framing), so a transfer runs near the link's speed. Concurrent
requests for one object share a single transfer. Pulled copies are secondary: the first
thing evicted under memory pressure, since they can be fetched again. When the owner frees
an object, every copy goes too (see raylet.copies): the free follows the pulls.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any

from skate.protocol.tls import client_context, server_context
from skate.protocol.transport import accept_forever, choose_address, parse_address
from skate.raylet.copies import CopyTracker, route_frees

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
        self._accepting: list[asyncio.Task] = []
        self._tls_servers: list[asyncio.Server] = []
        self.copies = CopyTracker()

    def handlers(self) -> dict:
        return {"transfer_begin": self.h_begin, "free_copies": self.h_free_copies}

    async def start(self, session_dir: str, bind_ip: str, node_ip: str) -> None:
        """Listen for data connections on a Unix socket and a TCP port."""
        loop = asyncio.get_running_loop()
        path = os.path.join(session_dir, "sockets", f"data-{self.raylet.node_id[:8]}.sock")
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(path)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((bind_ip, 0))
        tls = server_context()
        for sock in (unix, tcp):
            sock.listen(64)
            sock.setblocking(False)
            self._servers.append(sock)
            if sock is tcp and tls is not None:  # TLS: asyncio's server does the handshake
                server = await asyncio.start_server(
                    self._serve_tls, sock=sock, ssl=tls, ssl_handshake_timeout=10
                )
                self._tls_servers.append(server)
                continue
            self._accepting.append(
                loop.create_task(accept_forever(sock, self._serve, name="object transfer server"))
            )
        self.data_addresses = [f"unix://{path}", f"tcp://{node_ip}:{tcp.getsockname()[1]}"]

    def close(self) -> None:
        for task in self._accepting:
            task.cancel()
        for server in self._tls_servers:
            server.close()
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
        self.copies.served(oid, p.get("node_id") or "")
        asyncio.get_running_loop().call_later(TICKET_TTL_S, self._expire, ticket)
        return {"size": loc[1], "ticket": ticket, "address": "|".join(self.data_addresses)}

    def _expire(self, ticket: bytes) -> None:
        entry = self._tickets.pop(ticket, None)
        if entry is not None:
            self.raylet.spill.release_files(self.raylet.store.release(entry[0], entry[1]))

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
            await self._send_for_ticket(ticket, lambda view: loop.sock_sendall(sock, view))
        except (OSError, asyncio.TimeoutError) as exc:
            logger.info("data connection failed: %s", exc)
        finally:
            sock.close()

    async def _serve_tls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The same as `_serve`, on a TLS stream (each record is encrypted and authenticated)."""

        async def send(view: memoryview) -> None:
            writer.write(view)
            await writer.drain()

        try:
            ticket = await asyncio.wait_for(reader.readexactly(TICKET_BYTES), 10)
            await self._send_for_ticket(ticket, send)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
            logger.info("data connection failed: %s", exc)
        finally:
            writer.close()

    async def _send_for_ticket(self, ticket: bytes, send) -> None:
        entry = self._tickets.pop(ticket, None)
        if entry is None:
            logger.warning("data connection with an unknown ticket: closed")
            return
        oid, client, _ = entry
        obj = self.raylet.store.objects.get(oid)
        try:
            if obj is not None and obj.offset is not None:
                await send(self.raylet.spill.mapping.writable(obj.offset, obj.size))
        finally:
            self.raylet.spill.release_files(self.raylet.store.release(oid, client))

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
            offer = await conn.call("transfer_begin", {"oid": oid, "node_id": raylet.node_id})
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
        self.copies.pulled(oid, node_id)
        self.pulled_bytes += size
        return True

    # -- freeing every copy -----------------------------------------------------------
    def free(self, oids: list[bytes], sender: str | None = None) -> None:
        """Free objects here and pass the free on to the other nodes with copies of them.

        `sender` is the node that passed the free here; None when the owner freed them.
        """
        store = self.raylet.store
        held = {oid for oid in oids if oid in store.objects}
        routes = route_frees(self.copies, oids, held, set(self.raylet.scheduler.cluster), sender)
        for oid in oids:
            self._free_local(oid)
        for node_id, batch in routes.items():
            asyncio.ensure_future(self._send_free(node_id, batch))

    def h_free_copies(self, conn, p: dict) -> None:
        self.free(p["oids"], sender=p["from"])

    def node_gone(self, node_id: str) -> None:
        self.copies.node_gone(node_id)

    def _free_local(self, oid: bytes) -> None:
        pull = self._pulls.get(oid)
        if pull is not None:  # bytes are arriving into it: free it once they are in
            pull.add_done_callback(lambda _f: self._free_local(oid))
            return
        self.raylet.spill.release_files(self.raylet.store.free(oid))
        self.copies.freed(oid)  # a pull that finished just now recorded its source: forget it

    async def _send_free(self, node_id: str, oids: list[bytes]) -> None:
        address = self.raylet.node_address(node_id)
        if address is None:  # dead: its copies went with it
            return
        try:
            conn = await self.raylet.peer(address)
            conn.notify("free_copies", {"oids": oids, "from": self.raylet.node_id})
        except Exception as exc:
            logger.info("cannot tell node %s to free %d objects: %s", node_id[:12], len(oids), exc)


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
    tls = client_context() if scheme != "unix" else None
    with sock:
        sock.settimeout(60)
        sock.connect(target)
        if tls is not None:  # the SSL socket takes the descriptor over; closing it closes both
            with tls.wrap_socket(sock, server_hostname=target[0]) as tls_sock:
                _read_all(tls_sock, ticket, dest)
        else:
            _read_all(sock, ticket, dest)


def _read_all(sock: socket.socket, ticket: bytes, dest: memoryview) -> None:
    sock.sendall(ticket)
    pos, size = 0, len(dest)
    while pos < size:
        n = sock.recv_into(dest[pos:], min(size - pos, 64 * 1024 * 1024))
        if n == 0:
            raise ConnectionError(f"the sender closed after {pos} of {size} bytes")
        pos += n
