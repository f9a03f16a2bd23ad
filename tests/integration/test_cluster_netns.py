"""Two "hosts" on one machine: a head in one network namespace, a node in another, joined over TCP.

The node in the second namespace also gets its own view of the temp directory (a tmpfs mounted
over SKATE_TEMP_DIR inside `ip netns exec`, which runs in a mount namespace of its own), so
neither side sees the other's session files or Unix sockets: everything between them goes
over TCP on a veth pair, as between two machines. It joins with --token, as on another host.
"""

from __future__ import annotations

import glob
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.integration._cluster_helpers import STORE, cli_env, run_cli, temp_root, wait_gone

HEAD_IP, NODE_IP = "10.77.0.1", "10.77.0.2"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)
    except OSError:
        if check:
            raise
        return None


def _make_namespaces(ns_a: str, ns_b: str, veth_a: str, veth_b: str) -> None:
    try:
        _ip("netns", "add", ns_a)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        pytest.skip(f"network namespaces are not available here (`ip netns add` failed: {detail.strip()})")
    _ip("netns", "add", ns_b)
    _ip("link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
    _ip("link", "set", veth_a, "netns", ns_a)
    _ip("link", "set", veth_b, "netns", ns_b)
    for ns, dev, addr in ((ns_a, veth_a, HEAD_IP), (ns_b, veth_b, NODE_IP)):
        _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        _ip("-n", ns, "link", "set", dev, "up")
        _ip("-n", ns, "link", "set", "lo", "up")


DRIVER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import skate

    skate.init(address=sys.argv[1])

    @skate.remote
    def where():
        return skate.get_runtime_context().get_node_id()

    @skate.remote(resources={"host_b": 1})
    def make(n):
        return np.arange(n, dtype=np.int64)

    @skate.remote(resources={"host_b": 1})
    def digest(a):
        return int(a.sum()), a.nbytes, skate.get_runtime_context().get_node_id()

    nodes = {n["NodeID"]: n for n in skate.nodes() if n["Alive"]}
    a_node = skate.get(where.options(resources={"host_a": 1}).remote(), timeout=60)
    b_node = skate.get(where.options(resources={"host_b": 1}).remote(), timeout=60)
    n = 50 * 1024 * 1024 // 8  # 50 MB, made on host b, read here on host a
    arr = skate.get(make.remote(n), timeout=60)
    put = np.full(2_000_000, 3, dtype=np.int64)  # 16 MB from here to host b
    out = {
        "nodes": {k: {"ip": v["NodeManagerAddress"], "res": v["Resources"]} for k, v in nodes.items()},
        "driver_node": skate.get_runtime_context().get_node_id(),
        "a_node": a_node,
        "b_node": b_node,
        "arr_ok": bool(arr.shape == (n,) and int(arr[0]) == 0 and int(arr[-1]) == n - 1
                       and int(arr[::4096].sum()) == int(np.arange(0, n, 4096).sum())),
        "put_digest": skate.get(digest.remote(skate.put(put)), timeout=60),
        "cpu": skate.cluster_resources()["CPU"],
    }
    skate.shutdown()
    print("RESULT " + json.dumps(out))
    """
)


def test_head_and_node_in_two_network_namespaces():
    tag = f"{os.getpid() % 100000}"
    ns_a, ns_b = f"skt{tag}a", f"skt{tag}b"
    veth_a, veth_b = f"skv{tag}a", f"skv{tag}b"
    root = temp_root()
    port = 6379 + os.getpid() % 1000
    node_proc = None
    node_log = os.path.join(os.path.dirname(root), f"skate-netns-node-{tag}.log")
    try:
        _make_namespaces(ns_a, ns_b, veth_a, veth_b)
        cli = [sys.executable, "-m", "skate.scripts.cli"]
        head = subprocess.run(
            ["ip", "netns", "exec", ns_a, *cli, "start", "--head", "--node-ip-address", HEAD_IP]
            + ["--port", str(port), "--num-cpus", "1", "--resources", '{"host_a": 1}']
            + ["--object-store-memory", str(STORE)],
            capture_output=True,
            text=True,
            timeout=60,
            env=cli_env(),
        )
        assert head.returncode == 0, head.stderr
        address = f"{HEAD_IP}:{port}"
        assert address in head.stdout
        (token_file,) = glob.glob(os.path.join(root, "session_*", "token"))
        with open(token_file) as f:
            token = f.read().strip()

        # Host b: its own tmpfs over the temp root (invisible to host a), the token on the command line.
        join = " ".join(
            shlex.quote(a)
            for a in [*cli, "start", "--address", address, "--token", token, "--node-ip-address", NODE_IP]
            + ["--num-cpus", "1", "--resources", '{"host_b": 1}', "--object-store-memory", str(STORE)]
            + ["--block"]
        )
        script = (
            f"mount -t tmpfs skate-host-b {shlex.quote(root)} && mkdir {shlex.quote(root)}/host_b "
            f"&& exec {join}"
        )
        with open(node_log, "w") as log:
            node_proc = subprocess.Popen(
                ["ip", "netns", "exec", ns_b, "sh", "-c", script],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=cli_env(SKATE_TEMP_DIR=os.path.join(root, "host_b"), SKATE_JOIN_TIMEOUT_S="10"),
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and node_proc.poll() is None:
            with open(node_log) as f:
                if "joined" in f.read():
                    break
            time.sleep(0.1)
        with open(node_log) as f:
            text = f.read()
        assert "joined" in text, text
        assert not glob.glob(os.path.join(root, "host_b")), "host b's files must be invisible here"

        driver = subprocess.run(
            ["ip", "netns", "exec", ns_a, sys.executable, "-c", DRIVER, address],
            capture_output=True,
            text=True,
            timeout=110,
            env=cli_env(),
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        )
        assert driver.returncode == 0, driver.stdout + driver.stderr
        (line,) = [ln for ln in driver.stdout.splitlines() if ln.startswith("RESULT ")]
        result = json.loads(line[len("RESULT ") :])
        nodes = result["nodes"]
        assert len(nodes) == 2, nodes
        assert result["cpu"] == 2
        assert nodes[result["a_node"]]["ip"] == HEAD_IP and nodes[result["a_node"]]["res"]["host_a"] == 1
        assert nodes[result["b_node"]]["ip"] == NODE_IP and nodes[result["b_node"]]["res"]["host_b"] == 1
        assert result["driver_node"] == result["a_node"]
        assert result["arr_ok"] is True
        assert result["put_digest"] == [3 * 2_000_000, 16_000_000, result["b_node"]]
    finally:
        if node_proc is not None:
            if node_proc.poll() is None:
                node_proc.send_signal(signal.SIGTERM)
            try:
                node_proc.wait(20)
            except subprocess.TimeoutExpired:
                node_proc.kill()
                node_proc.wait(5)
        run_cli("stop", "--force", timeout=30)
        wait_gone(root, timeout=10)
        for ns in (ns_a, ns_b):
            _ip("netns", "del", ns, check=False)
        if os.path.exists(node_log):
            os.unlink(node_log)
