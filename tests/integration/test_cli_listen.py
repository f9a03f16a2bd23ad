"""`skate start --listen-address`: services bind there, while peers dial the node address."""

from __future__ import annotations

import psutil

from tests.integration._cluster_helpers import free_port, run_cli


def _listening(port: int) -> set[str]:
    return {
        c.laddr.ip for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == port
    }


def test_listen_address_binds_all_interfaces():
    port = free_port()
    try:
        started = run_cli(
            "start", "--head", "--port", str(port), "--listen-address", "0.0.0.0", "--num-cpus", "1"
        )
        assert started.returncode == 0, started.stderr
        assert f"127.0.0.1:{port}" in started.stdout  # what peers are told to dial
        assert _listening(port) == {"0.0.0.0"}
    finally:
        stopped = run_cli("stop")
    assert stopped.returncode == 0 and "stopped head" in stopped.stdout
    assert not _listening(port)


def test_default_listens_on_loopback_only():
    port = free_port()
    try:
        started = run_cli("start", "--head", "--port", str(port), "--num-cpus", "1")
        assert started.returncode == 0, started.stderr
        assert _listening(port) == {"127.0.0.1"}
    finally:
        run_cli("stop")
