"""A head node started with the CLI, with its client server, for the client tests."""

from __future__ import annotations

import json
import os
import sys
import time

import psutil

import skate
from tests.integration._cluster_helpers import (
    cli_env,
    force_stop_cli,
    free_port,
    run_cli,
    session_dirs,
    temp_root,
)


class Head:
    """A `skate start --head` node: its GCS address and client address."""

    def __init__(self, num_cpus: int = 4, **env: str):
        self.gcs_port = free_port()
        self.client_port = free_port()
        out = run_cli(
            "start",
            "--head",
            "--port",
            str(self.gcs_port),
            "--num-cpus",
            str(num_cpus),
            "--resources",
            json.dumps({"custom": 2}),
            "--object-store-memory",
            str(300 * 1024 * 1024),
            "--ray-client-server-port",
            str(self.client_port),
            env=cli_env(**env),
            timeout=60,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        self.gcs_address = f"127.0.0.1:{self.gcs_port}"
        self.client_address = f"skate://127.0.0.1:{self.client_port}"

    def session_dir(self) -> str:
        for name in session_dirs(temp_root()):
            path = os.path.join(temp_root(), name)
            try:
                with open(os.path.join(path, "cluster.json")) as f:
                    if str(self.gcs_port) in json.load(f)["gcs_address"]:
                        return path
            except (OSError, ValueError, KeyError):
                continue
        raise AssertionError("the head's session directory is gone")

    def processes(self, module: str) -> list[psutil.Process]:
        """This run's processes running `python -m module` (the client server, proxies)."""
        out = []
        for p in psutil.process_iter(["cmdline"]):
            cmd = p.info["cmdline"] or []
            if module in cmd and temp_root() in " ".join(cmd):
                out.append(p)
        return out

    def stop(self) -> None:
        force_stop_cli()


def run_client_script(code: str, timeout: float = 60, **env: str) -> tuple[int, str]:
    """Run `code` in a fresh Python process (a second client); returns (status, output)."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(**env),
    )
    return proc.returncode, proc.stdout + proc.stderr


def wait_until(predicate, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def connect_local(head: Head) -> None:
    """This process as an ordinary driver of the head's cluster."""
    if skate.is_initialized():
        skate.shutdown()
    skate.init(address=head.gcs_address)
