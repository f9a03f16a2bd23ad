"""The client server: the head's door for remote drivers (`skate://` and `ray://` addresses).

Started by `skate start --head` (port 10001 unless --ray-client-server-port or
--client-server-port says otherwise; it binds loopback unless the node's address or
--listen-address says otherwise). Every client authenticates with the cluster token (inside
TLS when the cluster uses it), like any other connection.

Each client session gets a proxy driver process of its own (`skate.client.proxy`), which
connects back here over a Unix socket in the session directory. Once the client's `connect`
is answered, the server hands the client's socket to the proxy (`protocol.handoff`, over a
socket pair made when the proxy was started) and forgets it: the proxy serves the client
directly, and the server is out of the data path. A TLS connection cannot move (its session
lives in this process), so then the server relays: every frame the client sends goes on to
its proxy, and every frame the proxy sends goes back to the client, whole and undecoded
(`protocol.relay`). When a client's connection drops, its proxy waits out the grace period
(SKATE_CLIENT_RECONNECT_GRACE_S, or Ray's RAY_CLIENT_RECONNECT_GRACE_PERIOD; 30 s) for the
client to come back with its session id (its new connection is handed to the same proxy),
then ends. A proxy that dies ends only its own session, and closes its client's connection
(it holds the only descriptor of it).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
from typing import Any

from skate._secure_files import open_private_append, read_token
from skate.exceptions import ProtocolError
from skate.protocol import listen
from skate.protocol.connection import ReplyThen
from skate.protocol.handoff import channel_pair, send_socket
from skate.protocol.relay import FrameRelay

logger = logging.getLogger("skate.client.server")

PROXY_START_TIMEOUT_S = 60.0


def grace_period() -> float:
    """Seconds a dropped client may take to reconnect before its session ends."""
    for var in ("SKATE_CLIENT_RECONNECT_GRACE_S", "RAY_CLIENT_RECONNECT_GRACE_PERIOD"):
        value = os.environ.get(var)
        if value:
            return float(value)
    return 30.0


class Session:
    """One client's session: its proxy process and connection, and (only when relaying, under
    TLS) the client's connection."""

    def __init__(self, sid: str, proc: subprocess.Popen, channel: socket.socket):
        self.sid = sid
        self.proc = proc
        self.channel = channel  # hands the client's sockets to the proxy (protocol.handoff)
        self.proxy: Any = None
        self.client: Any = None
        self.info: dict = {}
        self.ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self.ended = False
        self.to_client = FrameRelay(self._to_client)  # the proxy's frames (replies)

    def _to_client(self, data: bytes) -> None:
        client = self.client
        if client is not None and not client.closed:
            client.write_through(data)  # no client: replies for it are dropped, whole


class ClientServer:
    def __init__(self, session_dir: str, gcs_address: str, grace: float):
        self.session_dir = session_dir
        self.gcs_address = gcs_address
        self.grace = grace
        self.token = read_token(session_dir)
        self.sessions: dict[str, Session] = {}
        self.by_client: dict[Any, Session] = {}
        self.by_proxy: dict[Any, Session] = {}
        self.proxy_address = os.path.join(session_dir, "sockets", "client_server.sock")

    async def start(self, address: str) -> str:
        client_handlers: dict[str, Any] = {"connect": self._h_connect}
        proxy_handlers: dict[str, Any] = {"proxy_ready": self._h_proxy_ready}
        self.client_listener = await listen(
            address, self.token, client_handlers, on_close=self._client_closed, name="client-server"
        )
        self.proxy_listener = await listen(
            f"unix://{self.proxy_address}",
            self.token,
            proxy_handlers,
            on_close=self._proxy_closed,
            name="client-server-proxies",
        )
        return self.client_listener.address

    # -- clients ------------------------------------------------------------------------
    async def _h_connect(self, conn: Any, p: dict) -> dict | ReplyThen:
        sid = p.get("session")
        if sid:
            session = self.sessions.get(sid)
            if session is None or session.ended:
                raise ConnectionError(
                    f"client session {sid} has ended (the reconnect grace period of {self.grace:g} s "
                    "passed, or its proxy driver exited)"
                )
            old = session.client
            if old is not None and old is not conn:
                self.by_client.pop(old, None)
                session.client = None
                old.close("replaced by a reconnection")
            return ReplyThen(
                {"session": sid, "info": session.info}, functools.partial(self._hand_over, session)
            )
        session = self._spawn(p)
        try:
            await asyncio.wait_for(asyncio.shield(session.ready), PROXY_START_TIMEOUT_S)
        except (asyncio.TimeoutError, Exception) as exc:
            self._end(session, f"the proxy driver did not start: {exc!r}")
            raise RuntimeError(
                f"the client's proxy driver did not start ({exc!r}); see "
                f"{os.path.join(self.session_dir, 'logs', f'client_proxy_{session.sid}.err')}"
            ) from None
        if conn.closed:  # the client gave up meanwhile: it may still come back within the grace
            session.proxy.notify("detached")
            return {}
        return ReplyThen(
            {"session": session.sid, "info": session.info}, functools.partial(self._hand_over, session)
        )

    def _hand_over(self, session: Session, conn: Any) -> None:
        """Right after the connect reply is written: give the client's socket to its proxy, or,
        when the socket cannot move (TLS), relay between them."""
        if session.ended or session.proxy is None or session.proxy.closed:
            conn.close("the client session ended")
            return
        sock = conn.detach_socket()
        if sock is None:
            self._attach(session, conn)
            session.proxy.notify("attached")
            return
        try:
            send_socket(session.channel, sock)
        except OSError as exc:  # the proxy is gone, or not reading: the client reconnects
            logger.warning("session %s: could not hand the client over to its proxy: %s", session.sid, exc)
            return
        logger.debug("session %s: the client's connection is handed over to its proxy", session.sid)

    def _attach(self, session: Session, conn: Any) -> None:
        """From now on every frame the client sends goes to its proxy as it came."""
        session.client = conn
        self.by_client[conn] = session
        relay = FrameRelay(session.proxy.write_through)

        def received(data: bytes) -> None:
            if session.client is not conn or session.proxy is None or session.proxy.closed:
                conn.close("this connection has no live client session")
                return
            try:
                relay.feed(data)
            except ProtocolError as exc:
                conn.close(f"bad frame from the client: {exc}")

        conn.relay = received

    def _spawn(self, p: dict) -> Session:
        sid = secrets.token_hex(8)
        config = {k: p.get(k) for k in ("namespace", "runtime_env", "metadata")}
        log = os.fdopen(
            open_private_append(os.path.join(self.session_dir, "logs", f"client_proxy_{sid}.err")), "ab"
        )
        channel, proxy_end = channel_pair()
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "skate.client.proxy",
                    "--server",
                    f"unix://{self.proxy_address}",
                    "--session-dir",
                    self.session_dir,
                    "--session",
                    sid,
                    "--gcs-address",
                    self.gcs_address,
                    "--grace",
                    repr(self.grace),
                    "--config",
                    json.dumps(config),
                    "--handoff-fd",
                    str(proxy_end.fileno()),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                pass_fds=(proxy_end.fileno(),),
            )
        except BaseException:
            channel.close()
            raise
        finally:
            log.close()
            proxy_end.close()
        session = Session(sid, proc, channel)
        self.sessions[sid] = session
        asyncio.get_running_loop().create_task(self._watch(session))
        logger.info("session %s: proxy driver pid %s", sid, proc.pid)
        return session

    async def _watch(self, session: Session) -> None:
        """End the session when its proxy process exits (crashed before connecting, too)."""
        while session.proc.poll() is None:
            await asyncio.sleep(0.5)
        self._end(session, f"the proxy driver exited with status {session.proc.returncode}")

    def _client_closed(self, conn: Any) -> None:
        session = self.by_client.pop(conn, None)
        if session is None or session.client is not conn:
            return
        session.client = None
        if not session.ended and session.proxy is not None:
            session.proxy.notify("detached")

    # -- proxies ------------------------------------------------------------------------
    def _h_proxy_ready(self, conn: Any, p: dict) -> None:
        session = self.sessions.get(p["session"])
        if session is None or session.ended:
            conn.close("unknown session")
            return
        session.proxy = conn
        session.info = p["info"]
        self.by_proxy[conn] = session

        def received(data: bytes) -> None:
            try:
                session.to_client.feed(data)
            except ProtocolError as exc:
                conn.close(f"bad frame from the proxy: {exc}")

        conn.relay = received  # after this request, the proxy only answers its client's calls
        if not session.ready.done():
            session.ready.set_result(True)

    def _proxy_closed(self, conn: Any) -> None:
        session = self.by_proxy.pop(conn, None)
        if session is not None:
            self._end(session, "the proxy driver's connection closed")

    def _end(self, session: Session, why: str) -> None:
        if session.ended:
            return
        session.ended = True
        logger.info("session %s ends: %s", session.sid, why)
        if not session.ready.done():
            session.ready.set_exception(RuntimeError(why))
            session.ready.exception()
        if session.client is not None:
            self.by_client.pop(session.client, None)
            session.client.close(f"client session ended: {why}")
        session.channel.close()
        self.sessions.pop(session.sid, None)

    def stop(self) -> None:
        """Stop every proxy (their jobs end) and the listeners."""
        for session in list(self.sessions.values()):
            if session.proc.poll() is None:
                session.proc.terminate()
        for session in list(self.sessions.values()):
            try:
                session.proc.wait(10)
            except subprocess.TimeoutExpired:
                session.proc.kill()
        self.client_listener.close()
        self.proxy_listener.close()


async def _serve(args: argparse.Namespace) -> None:
    server = ClientServer(args.session_dir, args.gcs_address, grace_period())
    address = await server.start(args.address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.watch_fd is not None:
        loop.add_reader(args.watch_fd, stop.set)  # the node's starter went away
    print(f"READY {address}", flush=True)
    await stop.wait()
    server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Skate's client server")
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--address", required=True, help="tcp://host:port to accept clients on")
    parser.add_argument("--logging-level", type=int, default=logging.INFO)
    parser.add_argument("--watch-fd", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.logging_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
