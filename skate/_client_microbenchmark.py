"""The client lines of `skate microbenchmark`, as Ray's client microbenchmark names them.

A private head with a client server is started, and this process connects to it as a client
(`skate://`), so every call crosses the client's wire, the client server and the proxy.
"""

from __future__ import annotations

import socket
from typing import Any

import skate
from skate._microbenchmark import timeit


@skate.remote
def _small_value() -> bytes:
    return b"ok"


class _SyncValue:
    def small_value(self) -> bytes:
        return b"ok"


class _AsyncValue:
    async def small_value(self) -> bytes:
        return b"ok"


_Actor: Any = skate.remote(num_cpus=0)(_SyncValue)
_AsyncActor: Any = skate.remote(num_cpus=0)(_AsyncValue)


CLIENT_METRICS = (
    "client: get calls",
    "client: put calls",
    "client: tasks and get batch",
    "client: 1:1 actor calls sync",
    "client: 1:1 actor calls async",
    "client: put gigabytes",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_client_metrics(kw: dict[str, Any], num_cpus: int | None = None) -> None:
    """Print the client lines matching kw["pattern"] (nothing is started when none match)."""
    import numpy as np

    from skate._api import node_resources_for
    from skate._node import LocalNode

    pattern = kw.get("pattern") or ""
    if pattern and not any(pattern in name for name in CLIENT_METRICS):
        return
    resources, store = node_resources_for(num_cpus, None, None, None, head=True)
    node = LocalNode(
        resources=resources,
        object_store_memory=store,
        head=True,
        shared=True,
        client_server_port=_free_port(),
    )
    try:
        skate.init("skate://" + node.client_server_address.replace("tcp://", ""))
        try:
            value = skate.put(0)
            timeit("client: get calls", lambda: skate.get(value), **kw)
            timeit("client: put calls", lambda: skate.put(0), **kw)
            timeit(
                "client: tasks and get batch",
                lambda: skate.get([_small_value.remote() for _ in range(1000)]),
                **kw,
            )
            actor = _Actor.remote()
            timeit("client: 1:1 actor calls sync", lambda: skate.get(actor.small_value.remote()), **kw)
            async_actor = _AsyncActor.remote()
            timeit(
                "client: 1:1 actor calls async",
                lambda: skate.get([async_actor.small_value.remote() for _ in range(1000)]),
                1000,
                **kw,
            )
            arr = np.zeros(100 * 1024 * 1024, dtype=np.int64)
            timeit("client: put gigabytes", lambda: skate.put(arr), 8 * 0.1, **kw)
        finally:
            skate.shutdown()
    finally:
        node.shutdown()
