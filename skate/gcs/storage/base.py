"""The contract of a GCS storage backend, the `--storage` syntax, and the cluster-id binding.

A storage holds a few named tables (`TABLES`) of bytes keyed by bytes. Each call is durable
when it returns (the GCS writes before it replies to the client whose request changed a
table); `write_batch` applies its puts and deletes atomically. Records are encoded by the
GCS (`gcs.persistence`), never pickled: a storage another program can write must not be able
to run code in the GCS.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable
from dataclasses import dataclass

from skate.exceptions import GcsStorageError

# meta: cluster id, counters; the others: one record per actor, job, group, KV entry.
TABLES = ("meta", "actors", "jobs", "placement_groups", "kv")
CLUSTER_ID_KEY = b"cluster_id"
DEFAULT_SQLITE_NAME = "gcs.sqlite3"


def check_table(table: str) -> None:
    if table not in TABLES:
        raise ValueError(f"unknown GCS table {table!r}; the tables are {', '.join(TABLES)}")


class GcsStorage(abc.ABC):
    """Tables of bytes -> bytes. `durable`: the tables outlive the GCS process."""

    kind: str = ""
    durable: bool = False

    @property
    def description(self) -> str:
        """Where the tables live, for logs and `skate status` (never a password)."""
        return self.kind

    @abc.abstractmethod
    def get(self, table: str, key: bytes) -> bytes | None: ...

    @abc.abstractmethod
    def scan(self, table: str) -> list[tuple[bytes, bytes]]:
        """Every (key, value) of a table, ordered by key."""

    @abc.abstractmethod
    def write_batch(
        self, puts: Iterable[tuple[str, bytes, bytes]] = (), deletes: Iterable[tuple[str, bytes]] = ()
    ) -> None:
        """Apply the puts, then the deletes, all or nothing."""

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self.write_batch(puts=[(table, key, value)])

    def delete(self, table: str, key: bytes) -> bool:
        """Remove a key; True if it was there."""
        existed = self.get(table, key) is not None
        self.write_batch(deletes=[(table, key)])
        return existed

    @abc.abstractmethod
    def table_sizes(self) -> dict[str, tuple[int, int]]:
        """Per table: (entries, bytes of keys and values)."""

    def set_namespace(self, cluster_id: str) -> None:
        """Keys from now on belong to this cluster (Redis prefixes them; files hold one cluster)."""
        return None

    def is_empty(self) -> bool:
        return all(count == 0 for count, _ in self.table_sizes().values())

    def close(self) -> None:
        """Release connections and files (the tables stay where they are)."""
        return None


def bind_cluster(storage: GcsStorage, cluster_id: str, restart: bool) -> None:
    """Tie the storage to `cluster_id`. A first start needs an empty storage (another cluster's
    tables are never overwritten); a restart needs the tables of this very cluster."""
    storage.set_namespace(cluster_id)
    stored = storage.get("meta", CLUSTER_ID_KEY)
    where = storage.description
    if restart:
        if stored is None:
            raise GcsStorageError(
                f"the GCS storage {where} holds no tables of cluster {cluster_id}: it is not the "
                "storage this cluster's GCS used before it restarted (nothing was changed)"
            )
        if stored.decode() != cluster_id:
            raise GcsStorageError(
                f"the GCS storage {where} holds the tables of cluster {stored.decode()}, not of this "
                f"cluster ({cluster_id}); nothing was changed"
            )
        return
    if stored is not None and stored.decode() != cluster_id:
        raise GcsStorageError(
            f"the GCS storage {where} already holds the tables of cluster {stored.decode()}; refusing "
            "to overwrite them: give the new cluster another file or Redis database, or delete the old one"
        )
    if stored is None and not storage.is_empty():
        raise GcsStorageError(
            f"the GCS storage {where} is not empty and holds no cluster id; refusing to use it"
        )
    storage.put("meta", CLUSTER_ID_KEY, cluster_id.encode())


@dataclass(frozen=True)
class StorageSpec:
    """A parsed `--storage`: kind is memory, sqlite or redis; target the path or URL ('' = default)."""

    kind: str
    target: str = ""

    def sqlite_path(self, session_dir: str) -> str:
        return os.path.abspath(self.target) if self.target else os.path.join(session_dir, DEFAULT_SQLITE_NAME)

    def __str__(self) -> str:
        if self.kind == "redis":
            return _without_password(self.target)
        return f"{self.kind}:{self.target}" if self.target else self.kind


def parse_spec(spec: str) -> StorageSpec:
    """`memory`, `sqlite`, `sqlite:PATH`, `redis://[:password@]host:port[/db]` (`rediss://` for
    TLS), or a bare `host:port` (as Ray's RAY_REDIS_ADDRESS). ValueError names what is wrong."""
    spec = (spec or "").strip()
    if spec == "memory":
        return StorageSpec("memory")
    if spec == "sqlite":
        return StorageSpec("sqlite")
    if spec.startswith("sqlite:"):
        path = spec[len("sqlite:") :]
        if path.startswith("//"):  # sqlite:///abs/path, as URLs write it
            path = path[2:]
        if not path:
            raise ValueError("--storage sqlite: needs a path after the colon (or plain `sqlite`)")
        return StorageSpec("sqlite", path)
    if spec.startswith(("redis://", "rediss://")):
        return StorageSpec("redis", spec)
    host, sep, port = spec.rpartition(":")
    if sep and host and port.isdigit() and "/" not in host:
        return StorageSpec("redis", f"redis://{spec}")
    raise ValueError(
        f"--storage {spec!r} is not a GCS storage: use memory, sqlite, sqlite:PATH or redis://HOST:PORT[/DB]"
    )


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return f"{scheme}{sep}{rest}"
