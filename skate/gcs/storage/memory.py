"""Tables in the GCS's own memory: fastest, and gone with the GCS process (private clusters)."""

from __future__ import annotations

from collections.abc import Iterable

from skate.gcs.storage.base import TABLES, GcsStorage, check_table


class MemoryStorage(GcsStorage):
    kind = "memory"
    durable = False

    def __init__(self) -> None:
        self._tables: dict[str, dict[bytes, bytes]] = {t: {} for t in TABLES}

    def get(self, table: str, key: bytes) -> bytes | None:
        check_table(table)
        return self._tables[table].get(key)

    def scan(self, table: str) -> list[tuple[bytes, bytes]]:
        check_table(table)
        return sorted(self._tables[table].items())

    def write_batch(
        self, puts: Iterable[tuple[str, bytes, bytes]] = (), deletes: Iterable[tuple[str, bytes]] = ()
    ) -> None:
        puts, deletes = list(puts), list(deletes)
        for table in [p[0] for p in puts] + [d[0] for d in deletes]:
            check_table(table)
        for table, key, value in puts:
            self._tables[table][bytes(key)] = bytes(value)
        for table, key in deletes:
            self._tables[table].pop(bytes(key), None)

    def table_sizes(self) -> dict[str, tuple[int, int]]:
        return {t: (len(d), sum(len(k) + len(v) for k, v in d.items())) for t, d in self._tables.items()}
