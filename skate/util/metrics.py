"""User metrics (Ray's `ray.util.metrics`): Counter, Gauge and Histogram with tags.

Each process keeps its own series in memory (recording is a dict update under a lock); at
most once a second the I/O loop writes the metrics that changed to the GCS's internal KV
(namespace `_skate_metrics`, one key per metric and process). The dashboard's `/metrics`
reads them back, adds counters and histograms up over processes, takes the newest value of
a gauge, and exports them in Prometheus' text format under the name given here.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

KV_NAMESPACE = b"_skate_metrics"
FLUSH_DELAY_S = 1.0
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")

_lock = threading.Lock()
_dirty: dict[str, Metric] = {}
_flush_scheduled = False


class Metric:
    """A named metric with tag keys; values are kept per tag combination."""

    kind = "metric"

    def __init__(self, name: str, description: str = "", tag_keys: tuple[str, ...] | None = None):
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"metric name {name!r} must match [a-zA-Z_:][a-zA-Z0-9_:]*")
        if tag_keys is not None and (
            not isinstance(tag_keys, tuple) or not all(isinstance(k, str) for k in tag_keys)
        ):
            raise TypeError(f"tag_keys of metric {name!r} must be a tuple of str, got {tag_keys!r}")
        self._name = name
        self._description = description
        self._tag_keys = tuple(tag_keys or ())
        self._default_tags: dict[str, str] = {}
        self._series: dict[tuple, Any] = {}

    @property
    def info(self) -> dict:
        return {
            "name": self._name,
            "description": self._description,
            "tag_keys": self._tag_keys,
            "default_tags": dict(self._default_tags),
        }

    def set_default_tags(self, default_tags: dict[str, str]) -> Metric:
        for key in default_tags:
            if key not in self._tag_keys:
                raise ValueError(
                    f"unknown tag key {key!r} for metric {self._name!r} (tag_keys {self._tag_keys})"
                )
        self._default_tags = dict(default_tags)
        return self

    def _key(self, tags: dict[str, str] | None) -> tuple:
        merged = {**self._default_tags, **(tags or {})}
        for key in merged:
            if key not in self._tag_keys:
                raise ValueError(
                    f"unknown tag key {key!r} for metric {self._name!r} (tag_keys {self._tag_keys})"
                )
        missing = [k for k in self._tag_keys if k not in merged]
        if missing:
            raise ValueError(f"metric {self._name!r} needs a value for tag(s) {missing}")
        return tuple(str(merged[k]) for k in self._tag_keys)

    def _changed(self) -> None:
        global _flush_scheduled
        _dirty[self._name] = self
        if not _flush_scheduled:
            _flush_scheduled = _schedule_flush()

    def snapshot(self) -> dict:
        return {
            "name": self._name,
            "type": self.kind,
            "description": self._description,
            "tag_keys": list(self._tag_keys),
            "series": [[list(k), v] for k, v in self._series.items()],
            "time": time.time(),
        }


class Counter(Metric):
    """A value that only goes up (`inc`)."""

    kind = "counter"

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        if value <= 0:
            raise ValueError(f"Counter {self._name!r} can only go up: inc({value}) must be > 0")
        with _lock:
            key = self._key(tags)
            self._series[key] = self._series.get(key, 0.0) + value
            self._changed()


class Gauge(Metric):
    """A value that is set (`set`)."""

    kind = "gauge"

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        with _lock:
            self._series[self._key(tags)] = float(value)
            self._changed()


class Histogram(Metric):
    """Observations counted into buckets (`observe`); `boundaries` are the buckets' upper bounds."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        description: str = "",
        boundaries: list[float] | None = None,
        tag_keys: tuple[str, ...] | None = None,
    ):
        super().__init__(name, description, tag_keys)
        if not boundaries or any(b <= 0 for b in boundaries) or list(boundaries) != sorted(boundaries):
            raise ValueError(f"Histogram {name!r} needs increasing positive boundaries, got {boundaries!r}")
        self.boundaries = [float(b) for b in boundaries]

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        with _lock:
            key = self._key(tags)
            entry = self._series.get(key)
            if entry is None:
                entry = self._series[key] = {
                    "buckets": [0] * (len(self.boundaries) + 1),
                    "sum": 0.0,
                    "count": 0,
                }
            i = 0
            while i < len(self.boundaries) and value > self.boundaries[i]:
                i += 1
            entry["buckets"][i] += 1
            entry["sum"] += value
            entry["count"] += 1
            self._changed()

    def snapshot(self) -> dict:
        snap = super().snapshot()
        snap["boundaries"] = self.boundaries
        return snap


def _schedule_flush() -> bool:
    """Ask the core worker's I/O loop to write changed metrics soon; False without a cluster."""
    from skate.core_worker import context

    core = context.current
    if core is None or core.loop is None:
        return False
    core.loop.call_soon_threadsafe(core.loop.call_later, FLUSH_DELAY_S, _flush, core)
    return True


def _flush(core: Any) -> None:
    """I/O loop: one KV write per changed metric."""
    global _flush_scheduled
    with _lock:
        changed = list(_dirty.values())
        _dirty.clear()
        _flush_scheduled = False
        snaps = [m.snapshot() for m in changed]
    if core.stopped or core.gcs is None:
        return
    for snap in snaps:
        key = f"{snap['name']}:{core.worker_id}".encode()
        core.gcs.notify("kv_put", {"namespace": KV_NAMESPACE, "key": key, "value": json.dumps(snap).encode()})


__all__ = ["Counter", "Gauge", "Histogram"]
