"""The GCS's internal key-value store: tables of bytes keyed by namespace.

Skate's own entries (exported functions, under `fn:` keys) live in the system table, whose
namespace is None; every user namespace (`skate.experimental.internal_kv`, where namespace
None means b"") is a bytes value, so user calls can neither see nor touch system keys.
Pure data structure: no I/O, no waiting (the server adds waiting for a key to appear). An
optional journal callback hears of every change ("put"/"del"), so the GCS can make it durable.
"""

from __future__ import annotations

from collections.abc import Callable

Namespace = bytes | None  # None: the system's own table
Journal = Callable[..., None]  # journal(op, namespace, key[, value])


class KvStore:
    def __init__(self, journal: Journal | None = None) -> None:
        self._tables: dict[Namespace, dict[bytes, bytes]] = {}
        self.journal = journal

    def load(self, namespace: Namespace, key: bytes, value: bytes) -> None:
        """Put back an entry read from storage (not journaled: it is already there)."""
        self._tables.setdefault(namespace, {})[key] = value

    def sizes(self) -> tuple[int, int]:
        """(entries, bytes of keys and values) over every namespace."""
        entries = [(k, v) for table in self._tables.values() for k, v in table.items()]
        return len(entries), sum(len(k) + len(v) for k, v in entries)

    def get(self, namespace: Namespace, key: bytes) -> bytes | None:
        return self._tables.get(namespace, {}).get(key)

    def exists(self, namespace: Namespace, key: bytes) -> bool:
        return key in self._tables.get(namespace, {})

    def put(self, namespace: Namespace, key: bytes, value: bytes, overwrite: bool = True) -> bool:
        """Store value at key (an existing value only if overwrite); True if key was new."""
        table = self._tables.setdefault(namespace, {})
        existed = key in table
        if not existed or overwrite:
            if self.journal is not None:
                self.journal("put", namespace, key, value)
            table[key] = value
        return not existed

    def delete(self, namespace: Namespace, key: bytes, by_prefix: bool = False) -> int:
        """Remove key, or every key starting with it if by_prefix; the number removed."""
        table = self._tables.get(namespace)
        if not table:
            return 0
        doomed = [k for k in table if k.startswith(key)] if by_prefix else [key] if key in table else []
        for k in doomed:
            if self.journal is not None:
                self.journal("del", namespace, k)
            del table[k]
        return len(doomed)

    def keys(self, namespace: Namespace, prefix: bytes = b"") -> list[bytes]:
        """The keys of a namespace that start with prefix, in insertion order."""
        return [k for k in self._tables.get(namespace, {}) if k.startswith(prefix)]
