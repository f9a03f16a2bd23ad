"""Tables in one SQLite file (WAL mode), by default in the head's session directory.

No server to run: the default of `skate start --head`. Every write is committed before it
returns; with WAL and synchronous=NORMAL a commit survives the GCS process being killed (only
a power loss may take the last commits), and costs a few tens of microseconds. The file is
created 0600; an existing file must be ours, not a link, and a Skate GCS database that passes
SQLite's quick check, else it is refused untouched.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterable

from skate.exceptions import GcsStorageError
from skate.gcs.storage.base import TABLES, GcsStorage, check_table

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS skate_gcs "
    "(tbl TEXT NOT NULL, k BLOB NOT NULL, v BLOB NOT NULL, PRIMARY KEY (tbl, k)) WITHOUT ROWID"
)


class SqliteStorage(GcsStorage):
    kind = "sqlite"
    durable = True

    def __init__(self, path: str):
        self.path = path
        created = self._check_or_create(path)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise GcsStorageError(f"cannot open the GCS storage file {path}: {exc}") from None
        try:
            if not created:
                self._check_contents()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise GcsStorageError(
                f"the GCS storage file {path} is corrupt or not an SQLite database ({exc}); "
                "it was left as it is: move it away or give another path"
            ) from None

    @property
    def description(self) -> str:
        return f"sqlite:{self.path}"

    @staticmethod
    def _check_or_create(path: str) -> bool:
        """Refuse a link or another user's file; create a new one 0600. True if created."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            except OSError as exc:
                raise GcsStorageError(f"cannot create the GCS storage file {path}: {exc}") from None
            return True
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
            raise GcsStorageError(f"the GCS storage path {path} is not a regular file (a link?); refused")
        if st.st_uid != os.getuid():
            raise GcsStorageError(
                f"the GCS storage file {path} belongs to user {st.st_uid}, not to this user "
                f"({os.getuid()}); refused, and left as it is"
            )
        if not os.access(path, os.R_OK | os.W_OK):
            raise GcsStorageError(f"the GCS storage file {path} is not readable and writable by this user")
        return False

    def _check_contents(self) -> None:
        """An existing file: SQLite's quick check passes and it holds our table or nothing."""
        row = self._db.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")
        names = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if names and "skate_gcs" not in names:
            raise GcsStorageError(
                f"the file {self.path} is an SQLite database of something else (tables "
                f"{', '.join(sorted(names))}), not a Skate GCS storage; it was left as it is"
            )

    def get(self, table: str, key: bytes) -> bytes | None:
        check_table(table)
        row = self._db.execute("SELECT v FROM skate_gcs WHERE tbl=? AND k=?", (table, bytes(key))).fetchone()
        return bytes(row[0]) if row else None

    def scan(self, table: str) -> list[tuple[bytes, bytes]]:
        check_table(table)
        rows = self._db.execute("SELECT k, v FROM skate_gcs WHERE tbl=? ORDER BY k", (table,))
        return [(bytes(k), bytes(v)) for k, v in rows]

    def write_batch(
        self, puts: Iterable[tuple[str, bytes, bytes]] = (), deletes: Iterable[tuple[str, bytes]] = ()
    ) -> None:
        puts, deletes = list(puts), list(deletes)
        for table in [p[0] for p in puts] + [d[0] for d in deletes]:
            check_table(table)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if puts:
                db.executemany(
                    "INSERT OR REPLACE INTO skate_gcs (tbl, k, v) VALUES (?, ?, ?)",
                    [(t, bytes(k), bytes(v)) for t, k, v in puts],
                )
            if deletes:
                db.executemany(
                    "DELETE FROM skate_gcs WHERE tbl=? AND k=?", [(t, bytes(k)) for t, k in deletes]
                )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def table_sizes(self) -> dict[str, tuple[int, int]]:
        sizes = {t: (0, 0) for t in TABLES}
        for tbl, count, size in self._db.execute(
            "SELECT tbl, count(*), coalesce(sum(length(k) + length(v)), 0) FROM skate_gcs GROUP BY tbl"
        ):
            sizes[tbl] = (int(count), int(size))
        return sizes

    def close(self) -> None:
        try:
            self._db.close()
        except sqlite3.Error:
            pass
