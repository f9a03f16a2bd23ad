"""Driver-side helpers for the actor tests (never referenced from remote code)."""

from __future__ import annotations

import psutil

from tests.integration._helpers import wait_for


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_pid_gone(pid: int, timeout: float = 10.0) -> bool:
    """Poll until the process is gone (or a zombie); True if it went within `timeout`."""
    return bool(wait_for(lambda: not pid_alive(pid), timeout=timeout))


def free(resource: str) -> float:
    import skate

    return skate.available_resources().get(resource, 0.0)
