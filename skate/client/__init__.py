"""Skate Client: drive a remote cluster from another machine, as with Ray Client.

    skate.init("skate://head:10001")            # or "ray://head:10001"
    skate.client("skate://head:10001").namespace("ns").connect()

Both return a ClientContext (`.disconnect()`, usable in `with`). The package holds the
three parts of the client: `core` (the client process's stand-in for the core worker),
`server` (the client server on the head) and `proxy` (one driver per client session there).
Like Ray's `ray.client`, the module itself is callable: `skate.client(address)` is a builder.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

from skate.client.address import is_client_address, parse_client_address
from skate.core_worker import context

__all__ = ["ClientBuilder", "ClientContext", "connect_client", "is_client_address"]


class ClientContext(dict):
    """What a client connection returns: its cluster's facts; `.disconnect()`, or use `with`."""

    def __init__(self, core: Any):
        info = core.info
        super().__init__(
            address=core.client_address,
            gcs_address=info.get("gcs_address", "").replace("tcp://", ""),
            node_id=core.node_id,
            job_id=core.job_id,
            namespace=core.namespace,
        )
        self._core = core
        self.dashboard_url = None
        self.python_version = "{}.{}.{}".format(*sys.version_info[:3])
        self.protocol_version = "skate-client-1"
        self._num_clients = 1

    @property
    def address_info(self) -> dict:
        return dict(self)

    def disconnect(self) -> None:
        """End this client's session: its job ends and its non-detached actors and objects go."""
        self._core.stop()

    def __enter__(self) -> ClientContext:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.disconnect()


def find_token(host: str, port: int) -> bytes:
    """The cluster token: SKATE_AUTH_TOKEN, else the session on this machine whose client server
    listens on `port` (or the newest shared cluster here)."""
    token = os.environ.get("SKATE_AUTH_TOKEN")
    if token:
        return token.encode()
    from skate.scripts.attach import find_sessions

    sessions = find_sessions(None)
    for session in sessions:
        client = session.get("client_server_address") or ""
        if client.rpartition(":")[2] == str(port):
            return session["token"]
    shared = [s for s in sessions if s.get("shared")]
    if shared:
        return shared[0]["token"]
    raise ConnectionError(
        f"no cluster token for the client server at {host}:{port}: set SKATE_AUTH_TOKEN to the "
        "cluster's token (the head printed where it is kept)"
    )


def connect_client(
    address: str,
    *,
    namespace: str | None = None,
    runtime_env: dict | None = None,
    metadata: list | None = None,
    connect_timeout: float | None = None,
    ignore_reinit_error: bool = False,
) -> ClientContext:
    """Connect this process to the cluster behind the client server at `address`."""
    from skate.client.core import ClientCore

    host, port = parse_client_address(address)
    if context.current is not None:
        if ignore_reinit_error and getattr(context.current, "mode", None) == "client":
            return ClientContext(context.current)
        raise RuntimeError(
            "Maybe you called skate.init twice by accident? Call skate.shutdown() (or disconnect()) first."
        )
    if metadata is not None and not (
        isinstance(metadata, (list, tuple))
        and all(isinstance(m, (list, tuple)) and len(m) == 2 for m in metadata)
    ):
        raise TypeError(f"_metadata must be a list of (key, value) pairs, got {metadata!r}")
    tcp = f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"
    core = ClientCore(
        address,
        tcp,
        find_token(host, port),
        namespace=namespace,
        runtime_env=runtime_env,
        metadata=[list(m) for m in metadata or []],
        connect_timeout=connect_timeout,
    )
    core.start()
    return ClientContext(core)


class ClientBuilder:
    """`skate.client(address).namespace(...).env(...).connect()`, as Ray's ClientBuilder."""

    def __init__(self, address: str | None):
        address = address or os.environ.get("SKATE_ADDRESS") or os.environ.get("RAY_ADDRESS")
        if not address:
            raise ValueError("skate.client() needs an address such as 'skate://head:10001'")
        self._address: str = address if "://" in address else "skate://" + address
        parse_client_address(self._address)
        self._namespace: str | None = None
        self._runtime_env: dict | None = None
        self._metadata: list = []

    def namespace(self, namespace: str) -> ClientBuilder:
        self._namespace = namespace
        return self

    def env(self, runtime_env: dict) -> ClientBuilder:
        self._runtime_env = runtime_env
        return self

    def _client_metadata(self, metadata: list) -> ClientBuilder:
        self._metadata = list(metadata)
        return self

    def connect(self) -> ClientContext:
        from skate._options import check_namespace
        from skate._runtime_env import validate_runtime_env

        check_namespace(self._namespace)
        validate_runtime_env(self._runtime_env)
        return connect_client(
            self._address, namespace=self._namespace, runtime_env=self._runtime_env, metadata=self._metadata
        )


def builder(address: str | None = None) -> ClientBuilder:
    """A ClientBuilder for the client server at `address` (skate://, ray:// or host:port)."""
    return ClientBuilder(address)


class _CallableModule(types.ModuleType):
    """Lets `skate.client(address)` build a client, as `ray.client(address)` does."""

    def __call__(self, address: str | None = None) -> ClientBuilder:
        return ClientBuilder(address)


sys.modules[__name__].__class__ = _CallableModule
