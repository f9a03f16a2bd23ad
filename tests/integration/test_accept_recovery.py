"""Accept loops survive running out of file descriptors (EMFILE) and serve again after.

A child process runs the real object-transfer server (over a stand-in raylet) and an RPC
listener, lowers its RLIMIT_NOFILE, opens descriptors until none are left, and only frees them
when the test says so: connections made meanwhile wait in the backlog and are served once
descriptors are back. The old loop stopped for good at the first EMFILE.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from skate.protocol.transport import accept_forever, connect

TOKEN = b"emfile-test-token"

CHILD = textwrap.dedent(
    """
    import asyncio, logging, os, resource, sys, time
    from types import SimpleNamespace
    from skate.protocol.transport import listen
    from skate.raylet.object_manager import ObjectManager

    logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="LOG %(message)s", force=True)
    PAYLOAD = bytes(range(256)) * 64

    async def main(session_dir):
        loop = asyncio.get_running_loop()
        released = []
        store = SimpleNamespace(
            objects={b"oid": SimpleNamespace(offset=0, size=len(PAYLOAD))},
            release=lambda oid, client: released.append(oid) or [],
        )
        spill = SimpleNamespace(
            mapping=SimpleNamespace(writable=lambda off, size: memoryview(PAYLOAD)[off : off + size]),
            release_files=lambda files: None,
        )
        raylet = SimpleNamespace(node_id="ab" * 14, store=store, spill=spill)
        om = ObjectManager(raylet)
        os.makedirs(os.path.join(session_dir, "sockets"), exist_ok=True)
        await om.start(session_dir, "127.0.0.1", "127.0.0.1")
        for i in range(4):
            om._tickets[bytes([i]) * 32] = (b"oid", "pull", time.monotonic() + 60)
        listener = await listen("tcp://127.0.0.1:0", b"emfile-test-token", {"echo": lambda c, p: p})
        print("ADDR", om.data_addresses[1], listener.address, flush=True)

        resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        hogs = []
        try:
            while True:
                hogs.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        print("EXHAUSTED", len(hogs), flush=True)
        freed = asyncio.Event()

        def on_stdin():
            sys.stdin.readline()
            for fd in hogs:
                os.close(fd)
            hogs.clear()
            print("FREED", flush=True)
            freed.set()

        loop.add_reader(sys.stdin.fileno(), on_stdin)
        await freed.wait()
        await asyncio.sleep(30)  # serve until the test kills us

    asyncio.run(main(sys.argv[1]))
    """
)


def _read_until(proc, prefix: str) -> str:
    for line in proc.stdout:
        if line.startswith(prefix):
            return line
    raise AssertionError(f"the child exited before printing {prefix!r}")


@pytest.mark.timeout(60)
def test_object_transfer_and_rpc_servers_serve_again_after_emfile(tmp_path):
    from skate.raylet.object_manager import _receive

    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        _, data_addr, rpc_addr = _read_until(proc, "ADDR").split()
        _read_until(proc, "EXHAUSTED")
        # Connect while the child has no descriptor left: the kernel queues us, accept fails.
        host, port = data_addr.removeprefix("tcp://").rsplit(":", 1)
        early = socket.create_connection((host, int(port)), timeout=10)
        early.sendall(b"\x00" * 32)  # a valid ticket, waiting in the backlog
        warning = _read_until(proc, "LOG")
        assert "cannot accept" in warning and "object transfer" in warning
        proc.stdin.write("free\n")
        proc.stdin.flush()
        _read_until(proc, "FREED")
        # The connection made during the outage is served ...
        got = b""
        while len(got) < 256 * 64:
            chunk = early.recv(65536)
            assert chunk, "the object-transfer server dropped the queued connection"
            got += chunk
        assert got == bytes(range(256)) * 64
        early.close()
        # ... and so are new ones, on both servers.
        dest = bytearray(256 * 64)
        _receive(data_addr, b"\x01" * 32, memoryview(dest))
        assert bytes(dest) == bytes(range(256)) * 64

        async def rpc():
            conn = await connect(rpc_addr, TOKEN, timeout=10)
            try:
                return await conn.call("echo", "back")
            finally:
                conn.close()

        assert asyncio.run(rpc()) == "back"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.timeout(20)
def test_accept_forever_logs_once_per_outage_and_resumes(caplog):
    async def main():
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.setblocking(False)
        loop = asyncio.get_running_loop()
        real_accept = loop.sock_accept
        failures = {"left": 5}

        async def flaky_accept(sock):
            if failures["left"] > 0:
                failures["left"] -= 1
                raise OSError(errno.EMFILE if failures["left"] % 2 else errno.ENFILE, "no fds")
            return await real_accept(sock)

        loop.sock_accept = flaky_accept  # type: ignore[method-assign]
        served = asyncio.Queue()

        async def handle(sock):
            sock.close()
            await served.put(1)

        task = loop.create_task(accept_forever(server, handle, name="flaky", backoff=(0.001, 0.01)))
        reader, writer = await asyncio.open_connection(*server.getsockname())
        await asyncio.wait_for(served.get(), 5)
        writer.close()
        # A connection aborted before it was accepted is skipped, not fatal.
        failures["left"] = 0
        loop.sock_accept = lambda s: _raise(OSError(errno.ECONNABORTED, "aborted"), real_accept, loop)
        _, w2 = await asyncio.open_connection(*server.getsockname())
        await asyncio.wait_for(served.get(), 5)
        w2.close()
        task.cancel()
        server.close()

    def _raise(exc, real_accept, loop):
        loop.sock_accept = real_accept  # once
        raise exc

    with caplog.at_level("WARNING", logger="skate.protocol.transport"):
        asyncio.run(main())
    outage = [r for r in caplog.records if "cannot accept" in r.getMessage()]
    assert len(outage) == 1 and "flaky" in outage[0].getMessage()
    assert any("accepting connections again" in r.getMessage() for r in caplog.records)
