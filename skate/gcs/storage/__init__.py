"""Where the GCS keeps its durable tables: in memory, in an SQLite file, or in Redis.

`open_storage(spec)` picks the backend from a `--storage` value (see `parse_spec`); every
backend honours the contract of `base.GcsStorage`, and `bind_cluster` ties a storage to one
cluster id so a restarted GCS reloads its own tables and never another cluster's.
"""

from __future__ import annotations

from skate.gcs.storage.base import TABLES, GcsStorage, StorageSpec, bind_cluster, parse_spec
from skate.gcs.storage.memory import MemoryStorage

__all__ = [
    "TABLES",
    "GcsStorage",
    "MemoryStorage",
    "StorageSpec",
    "bind_cluster",
    "open_storage",
    "parse_spec",
]


def open_storage(spec: str | StorageSpec, session_dir: str, password: str | None = None) -> GcsStorage:
    """Open (creating if need be) the storage `spec` names; GcsStorageError if it cannot be used."""
    parsed = spec if isinstance(spec, StorageSpec) else parse_spec(spec)
    if parsed.kind == "memory":
        return MemoryStorage()
    if parsed.kind == "sqlite":
        from skate.gcs.storage.sqlite import SqliteStorage

        return SqliteStorage(parsed.sqlite_path(session_dir))
    from skate.gcs.storage.redis_store import RedisStorage

    return RedisStorage(parsed.target, password=password)
