"""Exporting functions once per job by content hash, and loading them in workers."""

from __future__ import annotations

import hashlib
import threading

import cloudpickle


class FunctionManager:
    def __init__(self, core):
        self.core = core
        self._exported: set[bytes] = set()
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
        self._exported.add(key)
        self._cache.setdefault(key, None)
        core = self.core
        core.post(core.gcs.notify, "kv_put", {"key": b"fn:" + key, "value": data})

    def load(self, key: bytes) -> object:
        fn = self._cache.get(key)
        if fn is not None:
            return fn
        with self._lock:
            fn = self._cache.get(key)
            if fn is None:
                core = self.core
                data = core.request(core.gcs, "kv_get", {"key": b"fn:" + key, "wait": 60.0})
                if data is None:
                    raise RuntimeError(f"function {key.hex()} was never exported to the cluster")
                fn = cloudpickle.loads(data)
                self._cache[key] = fn
        return fn
