"""Exporting functions once per job by content hash, and loading them in workers."""

from __future__ import annotations

import hashlib
import threading
import time

import cloudpickle

from skate import _config
from skate.protocol.connection import ConnectionClosed


class FunctionManager:
    def __init__(self, core):
        self.core = core
        self._exported: dict[bytes, bytes] = {}  # key -> pickled (sent again to a restarted GCS)
        self._cache: dict[bytes, object] = {}
        self._lock = threading.Lock()

    @staticmethod
    def pickle(fn: object) -> tuple[bytes, bytes]:
        """(content key, pickled bytes) of a function or class."""
        data = cloudpickle.dumps(fn, protocol=5)
        return hashlib.sha1(data).digest()[:16], data

    def export(self, key: bytes, data: bytes) -> None:
        """Store the pickled function in the GCS (once per process) for workers to load."""
        if key in self._exported:
            return
        self._exported[key] = data
        self._cache.setdefault(key, None)
        self.core.post(self._send, key, data)

    def _send(self, key: bytes, data: bytes) -> None:
        """I/O thread: to whichever GCS connection is current (it may have been replaced)."""
        self.core.gcs.notify("kv_put", {"key": b"fn:" + key, "value": data, "overwrite": False})

    def reexport(self) -> None:
        """I/O thread, after reconnecting to a GCS: what this process exported may have died with
        the GCS before it was stored (the notice was in flight), so send it again."""
        for key, data in list(self._exported.items()):
            self._send(key, data)

    def load(self, key: bytes) -> object:
        fn = self._cache.get(key)
        if fn is not None:
            return fn
        with self._lock:
            fn = self._cache.get(key)
            if fn is None:
                data = self._fetch(key)
                if data is None:
                    raise RuntimeError(f"function {key.hex()} was never exported to the cluster")
                fn = cloudpickle.loads(data)
                self._cache[key] = fn
        return fn

    def _fetch(self, key: bytes) -> bytes | None:
        """The pickled function from the GCS, waiting for it to appear; across a GCS restart
        (a lost connection) the request is made again until the reconnect timeout."""
        core = self.core
        deadline = time.monotonic() + _config.GCS_RECONNECT_TIMEOUT_S
        while True:
            try:
                return core.request(core.gcs, "kv_get", {"key": b"fn:" + key, "wait": 60.0})
            except (ConnectionError, ConnectionClosed):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
