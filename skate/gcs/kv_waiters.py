"""Callers waiting in the GCS for an internal-KV key to appear, bounded.

Each `kv_get` with `wait` parks a future here until the key is written or the wait ends. A
waiter that times out or whose connection closes is removed at once (not left in a list until
the key appears, which may be never), and there are at most `max_total` waiters in all and
`max_per_connection` per connection: one more is refused with a clear error instead of letting
a client grow the GCS without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

from skate.exceptions import RaySystemError


class KvWaiters:
    def __init__(self, max_total: int, max_per_connection: int) -> None:
        self.max_total = max_total
        self.max_per_connection = max_per_connection
        self._by_key: dict[Hashable, set[asyncio.Future]] = {}
        self._by_conn: dict[Any, set[asyncio.Future]] = {}
        self._total = 0

    def __len__(self) -> int:
        return self._total

    def wait(self, key: Hashable, conn: Any, timeout: float) -> asyncio.Future:
        """A future for the value written at `key`; it raises TimeoutError after `timeout` s."""
        mine = self._by_conn.get(conn, set())
        if self._total >= self.max_total or len(mine) >= self.max_per_connection:
            raise RaySystemError(
                f"too many callers are waiting for internal KV keys ({self._total} in all, {len(mine)} on "
                f"this connection; limits {self.max_total} and {self.max_per_connection})"
            )
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._by_key.setdefault(key, set()).add(fut)
        self._by_conn.setdefault(conn, set()).add(fut)
        self._total += 1
        timer = loop.call_later(timeout, _expire, fut)
        fut.add_done_callback(lambda f: self._forget(key, conn, f, timer))
        return fut

    def wake(self, key: Hashable, value: Any) -> None:
        for fut in list(self._by_key.get(key, ())):
            if not fut.done():
                fut.set_result(value)

    def connection_closed(self, conn: Any) -> None:
        for fut in list(self._by_conn.get(conn, ())):
            fut.cancel()

    def _forget(self, key: Hashable, conn: Any, fut: asyncio.Future, timer: asyncio.TimerHandle) -> None:
        timer.cancel()
        for table, k in ((self._by_key, key), (self._by_conn, conn)):
            futs = table.get(k)
            if futs is not None and fut in futs:
                futs.discard(fut)
                if not futs:
                    del table[k]
        self._total -= 1


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(asyncio.TimeoutError())
