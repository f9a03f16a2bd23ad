"""Tables in Redis (the `redis` client library, an optional dependency: `pip install skate[redis]`).

Each table is one hash, `skate:<cluster id>:<table>`, so several clusters can share a Redis
database without touching each other's keys. A batch is one MULTI/EXEC transaction. The
connection is checked when the storage opens: an unreachable server, a refused password or a
missing client library is a GcsStorageError naming the server (never the password).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from skate.exceptions import GcsStorageError
from skate.gcs.storage.base import TABLES, GcsStorage, _without_password, check_table

CONNECT_TIMEOUT_S = 5.0


class RedisStorage(GcsStorage):
    kind = "redis"
    durable = True

    def __init__(self, url: str, password: str | None = None, namespace: str = ""):
        try:
            import redis
        except ImportError:
            raise GcsStorageError(
                "--storage redis:// needs the redis client library: pip install 'skate[redis]' (or redis>=5)"
            ) from None
        self.url = url
        self._prefix = f"skate:{namespace}:" if namespace else "skate:"
        kwargs: dict[str, Any] = {"socket_connect_timeout": CONNECT_TIMEOUT_S, "socket_timeout": 30.0}
        if password:
            kwargs["password"] = password
        try:
            self._r = redis.Redis.from_url(url, **kwargs)
            self._r.ping()
        except redis.exceptions.AuthenticationError as exc:
            if not password:
                raise GcsStorageError(
                    f"Redis at {self.description} needs a password (--redis-password): {exc}"
                ) from None
            raise GcsStorageError(f"Redis at {self.description} refused the password: {exc}") from None
        except redis.exceptions.ResponseError as exc:
            if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
                raise GcsStorageError(
                    f"Redis at {self.description} needs a password (--redis-password): {exc}"
                ) from None
            raise GcsStorageError(f"Redis at {self.description} refused to answer: {exc}") from None
        except (redis.exceptions.RedisError, ValueError, OSError) as exc:
            raise GcsStorageError(f"cannot reach Redis at {self.description}: {exc}") from None
        self._errors = redis.exceptions.RedisError

    @property
    def description(self) -> str:
        return _without_password(self.url)

    def set_namespace(self, cluster_id: str) -> None:
        self._prefix = f"skate:{cluster_id}:"

    def _key(self, table: str) -> str:
        check_table(table)
        return self._prefix + table

    def get(self, table: str, key: bytes) -> bytes | None:
        return self._call(self._r.hget, self._key(table), bytes(key))

    def scan(self, table: str) -> list[tuple[bytes, bytes]]:
        return sorted(self._call(self._r.hgetall, self._key(table)).items())

    def write_batch(
        self, puts: Iterable[tuple[str, bytes, bytes]] = (), deletes: Iterable[tuple[str, bytes]] = ()
    ) -> None:
        puts, deletes = list(puts), list(deletes)
        pipe = self._r.pipeline(transaction=True)
        for table, key, value in puts:
            pipe.hset(self._key(table), bytes(key), bytes(value))
        for table, key in deletes:
            pipe.hdel(self._key(table), bytes(key))
        self._call(pipe.execute)

    def table_sizes(self) -> dict[str, tuple[int, int]]:
        """Entries by HLEN; bytes as Redis counts the hash's memory (0 where MEMORY is not allowed)."""
        sizes = {}
        for table in TABLES:
            key = self._key(table)
            count = int(self._call(self._r.hlen, key))
            try:
                size = int(self._r.memory_usage(key) or 0) if count else 0
            except self._errors:
                size = 0
            sizes[table] = (count, size)
        return sizes

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except self._errors as exc:
            raise GcsStorageError(f"Redis at {self.description} failed: {exc}") from exc

    def close(self) -> None:
        try:
            self._r.close()
        except Exception:
            pass
