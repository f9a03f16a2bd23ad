"""The GCS's internal key-value store: tables of bytes keyed by namespace.

Skate's own entries (exported functions, under `fn:` keys) live in the system table, whose
namespace is None; every user namespace (`skate.experimental.internal_kv`, where namespace
None means b"") is a bytes value, so user calls can neither see nor touch system keys.
Pure data structure: no I/O, no waiting (the server adds waiting for a key to appear).
"""

from __future__ import annotations

Namespace = bytes | None  # None: the system's own table


class KvStore:
    def __init__(self) -> None:
        self._tables: dict[Namespace, dict[bytes, bytes]] = {}

    def get(self, namespace: Namespace, key: bytes) -> bytes | None:
        return self._tables.get(namespace, {}).get(key)

    def exists(self, namespace: Namespace, key: bytes) -> bool:
        return key in self._tables.get(namespace, {})

    def put(self, namespace: Namespace, key: bytes, value: bytes, overwrite: bool = True) -> bool:
        """Store value at key (an existing value only if overwrite); True if key was new."""
        table = self._tables.setdefault(namespace, {})
        existed = key in table
        if not existed or overwrite:
            table[key] = value
        return not existed

    def delete(self, namespace: Namespace, key: bytes, by_prefix: bool = False) -> int:
        """Remove key, or every key starting with it if by_prefix; the number removed."""
        table = self._tables.get(namespace)
        if not table:
            return 0
        if not by_prefix:
            return 1 if table.pop(key, None) is not None else 0
        doomed = [k for k in table if k.startswith(key)]
        for k in doomed:
            del table[k]
        return len(doomed)

    def keys(self, namespace: Namespace, prefix: bytes = b"") -> list[bytes]:
        """The keys of a namespace that start with prefix, in insertion order."""
        return [k for k in self._tables.get(namespace, {}) if k.startswith(prefix)]
