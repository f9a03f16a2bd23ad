"""How long the GCS and the raylet take to answer requests: a fixed-bucket histogram per method.

Only the processes that serve the cluster measure. Their listeners and connections are made
with a `LatencyRecorder` (`listen(..., recorder=)`, `connect(..., recorder=)`), which makes
them `TimedConnection`s; every other connection (workers, drivers: `push_task` is a request
there) is the plain `Connection` and runs not one extra instruction.

The measure is server-side handler time: from the request's dispatch to its reply being queued
(an async handler's reply comes when its coroutine ends). Notifications are not measured. The
hot path is two `perf_counter` calls, a dict insert and pop, a `bisect` over the fixed bounds
and two in-place additions; Prometheus objects are built only at scrape time
(`histogram_family`), from a `snapshot` that also crosses the wire (the GCS's `rpc_latency`).
"""

from __future__ import annotations

from bisect import bisect_left
from time import perf_counter
from typing import Any

from skate.protocol.connection import Connection

METRIC_NAME = "skate_rpc_latency_seconds"
METRIC_HELP = "Server-side handler time of RPC requests (dispatch to reply), by component and method"
# Upper bounds in seconds (Prometheus' `le`); a last bucket, +Inf, catches the rest.
BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class LatencyRecorder:
    """Per-method counts in fixed buckets plus the sum, updated in place (one event loop's
    thread: no lock). `component` names the process kind ("gcs", "raylet")."""

    __slots__ = ("_series", "bounds", "component")

    def __init__(self, component: str, bounds: tuple[float, ...] = BUCKETS) -> None:
        self.component = component
        self.bounds = bounds
        # method -> [count of each bucket (the bounds, then +Inf)..., sum of seconds]
        self._series: dict[str, list] = {}

    def observe(self, method: str, seconds: float) -> None:
        series = self._series.get(method)
        if series is None:
            series = self._series[method] = [0] * (len(self.bounds) + 1) + [0.0]
        series[bisect_left(self.bounds, seconds)] += 1  # `le`: a value on a bound counts in it
        series[-1] += seconds

    def snapshot(self) -> dict[str, Any]:
        """A plain copy (wire-safe): {"component", "bounds", "methods": {method: {"buckets":
        [non-cumulative counts, +Inf last], "sum": seconds}}}."""
        return {
            "component": self.component,
            "bounds": list(self.bounds),
            "methods": {m: {"buckets": s[:-1], "sum": s[-1]} for m, s in self._series.items()},
        }


class TimedConnection(Connection):
    """A `Connection` that records each request's handler time in its `recorder`."""

    def __init__(self, *args: Any, recorder: LatencyRecorder, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorder = recorder
        self._started: dict[int, tuple[str, float]] = {}

    def _on_request(self, req_id: int, method: str, payload: Any) -> None:
        if method in self.handlers:  # unknown names are not series: a peer cannot mint them
            self._started[req_id] = (method, perf_counter())
        super()._on_request(req_id, method, payload)

    def _reply(self, req_id: int, error: Any, payload: Any) -> None:
        started = self._started.pop(req_id, None)
        if started is not None:
            self.recorder.observe(started[0], perf_counter() - started[1])
        super()._reply(req_id, error, payload)


def histogram_family(snapshots: list[tuple[dict[str, str], dict[str, Any]]]) -> Any:
    """`skate_rpc_latency_seconds` as a prometheus_client histogram family, from snapshots each
    with extra labels (e.g. {"NodeId": ...}); every series is labelled Component and Method.
    Imports prometheus_client here: only a scrape pays for it."""
    from prometheus_client.core import HistogramMetricFamily

    extra = sorted({k for labels, _ in snapshots for k in labels})
    family = HistogramMetricFamily(METRIC_NAME, METRIC_HELP, labels=["Component", "Method", *extra])
    for labels, snap in snapshots:
        bounds = [*(repr(float(b)) for b in snap["bounds"]), "+Inf"]
        for method, series in sorted(snap["methods"].items()):
            cumulative, buckets = 0, []
            for bound, n in zip(bounds, series["buckets"]):
                cumulative += n
                buckets.append((bound, cumulative))
            values = [snap["component"], method, *(labels.get(k, "") for k in extra)]
            family.add_metric(values, buckets, series["sum"])
    return family
