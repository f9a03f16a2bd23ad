"""`multiprocessing.Pool` on actors (Ray's `ray.util.multiprocessing`):
`from skate.util.multiprocessing import Pool` in place of `from multiprocessing import Pool`."""

from __future__ import annotations

from multiprocessing import TimeoutError

from skate.util.multiprocessing.pool import Pool
from skate.util.multiprocessing.results import AsyncResult, IMapIterator

__all__ = ["AsyncResult", "IMapIterator", "Pool", "TimeoutError"]
