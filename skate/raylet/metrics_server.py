"""The node's Prometheus endpoint, served by its raylet (Ray's `--metrics-export-port`).

`GET /metrics` with `Authorization: Bearer <cluster token>` answers this node's series, each
labelled NodeId: the object store's bytes, the resources, the worker pool by state, leases,
the processes' memory, and the raylet's RPC handler times (`protocol.latency`). The listener
binds where the raylet's own TCP listener does (the node's IP, loopback by default) on the
port asked for (0: any free port); the port is in the node's info (`skate.nodes()`'s
"MetricsExportPort").

A minimal asyncio server, not aiohttp: the raylet stays light to start. Each connection gets
one answer and is closed; its request head must arrive within HEAD_TIMEOUT_S and be at most
`metrics_http.MAX_HEAD_BYTES` (else 408 / 431), at most MAX_CONNECTIONS are served at once
(others get 503), and what to answer is `metrics_http.decide`'s (401 without the token).
prometheus_client is imported at the first scrape, and the series built only then.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from skate._process_memory import read_process
from skate.protocol.latency import histogram_family
from skate.raylet import metrics_http as http
from skate.raylet.scheduler import IDLE, LEASED, STARTING

logger = logging.getLogger(__name__)

HEAD_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 16


class MetricsServer:
    """The endpoint's listener; `raylet` is the Raylet it reports on."""

    def __init__(self, raylet: Any) -> None:
        self.raylet = raylet
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0: a free port); returns the port."""
        self._server = await asyncio.start_server(
            self._serve, host, port, limit=http.MAX_HEAD_BYTES, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._writers) >= MAX_CONNECTIONS:
            writer.write(http.render_error(503, "too many connections"))
            writer.close()
            return
        self._writers.add(writer)
        try:
            response = await self._answer(reader)
            if response:
                writer.write(response)
                await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
        except (ConnectionError, asyncio.TimeoutError, OSError):
            pass  # the client went away or does not read: nothing more to do for it
        except Exception:
            logger.exception("metrics endpoint: request failed")
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> bytes:
        """The whole response to the request on `reader` (b"": close without a word)."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
        except asyncio.LimitOverrunError:
            return http.render_error(431, f"request head over {http.MAX_HEAD_BYTES} bytes")
        except asyncio.TimeoutError:
            return http.render_error(408, "no complete request head in time")
        except (asyncio.IncompleteReadError, ConnectionError):
            return b""
        answer = http.decide(http.parse_head(head), self.raylet.token, "")
        if not answer.serve:
            return http.render_error(answer.status, answer.message)
        return http.render(200, await node_metrics_text(self.raylet), head_only=answer.head_only)


def _rss_by_component(processes: list[tuple[int, str]]) -> dict[str, int]:
    """Resident bytes summed per component (raylet, zygote, worker, driver); read on a thread."""
    out: dict[str, int] = {}
    for pid, component in processes:
        reading = read_process(pid)
        if reading is not None:
            out[component] = out.get(component, 0) + reading["rss"]
    return out


async def node_metrics_text(raylet: Any) -> bytes:
    """This node's series in Prometheus' text format."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    node = raylet.node_id
    families: list[Any] = []

    def gauge(name: str, help_text: str, labels: list[str], rows: list[tuple[list[str], float]]) -> None:
        fam = GaugeMetricFamily(name, help_text, labels=["NodeId", *labels])
        for values, value in rows:
            fam.add_metric([node, *values], value)
        families.append(fam)

    stats = raylet.store_stats()
    for key, help_text in (
        ("used_bytes", "Bytes of the node's shared-memory object store in use"),
        ("capacity_bytes", "Size of the node's shared-memory object store"),
        ("spilled_bytes", "Bytes spilled to disk so far"),
        ("restored_bytes", "Bytes restored from disk so far"),
    ):
        gauge(f"skate_object_store_{key}", help_text, [], [([], stats[key])])
    gauge("skate_object_store_num_objects", "Objects in the node's store", [], [([], stats["num_objects"])])

    total = raylet.total_resources()
    available = raylet.scheduler.available_float()
    names = sorted(total)
    gauge("skate_resources_total", "Resources of the node", ["Name"], [([n], total[n]) for n in names])
    gauge(
        "skate_resources_used",
        "Resources held by leases on the node",
        ["Name"],
        [([n], total[n] - available.get(n, total[n])) for n in names],
    )

    sched = raylet.scheduler
    states = {STARTING: 0, IDLE: 0, LEASED: 0, "blocked": 0}
    running = {"task": 0, "actor": 0}
    for slot in list(sched.workers.values()):
        states["blocked" if slot.state == LEASED and slot.blocked else slot.state] += 1
        if slot.state == LEASED:
            running["actor" if slot.actor else "task"] += 1
    gauge(
        "skate_node_workers",
        "Worker processes of the node's pool, by state",
        ["State"],
        [([s], n) for s, n in states.items()],
    )
    gauge(
        "skate_node_leases_running",
        "Leased workers running tasks or hosting actors (Kind)",
        ["Kind"],
        [([k], n) for k, n in running.items()],
    )
    gauge(
        "skate_node_lease_requests_queued",
        "Lease requests waiting on this node (infeasible ones included)",
        [],
        [([], len(sched.queue) + len(sched.infeasible))],
    )
    granted = CounterMetricFamily(
        "skate_node_leases_granted", "Leases granted by this node", labels=["NodeId"]
    )
    granted.add_metric([node], sched.leases_granted)
    families.append(granted)

    kinds: dict[str, int] = {}
    processes: list[tuple[int, str]] = [(os.getpid(), "raylet")]
    for conn in list(raylet.clients.values()):
        if conn.closed:
            continue
        mode = conn.peer_info.get("mode") or "driver"
        kind = {"driver": "DRIVER", "worker": "WORKER"}.get(mode, "OWNER")
        kinds[kind] = kinds.get(kind, 0) + 1
        if conn.peer_info.get("pid"):
            processes.append((int(conn.peer_info["pid"]), "worker" if mode == "worker" else "driver"))
    gauge(
        "skate_workers",
        "Worker and driver processes connected to the raylet",
        ["WorkerType"],
        [([k], n) for k, n in sorted(kinds.items())],
    )
    zygote = raylet.zygote.process
    if zygote is not None and zygote.poll() is None:
        processes.append((zygote.pid, "zygote"))
    rss = await asyncio.get_running_loop().run_in_executor(None, _rss_by_component, processes)
    gauge(
        "skate_node_process_rss_bytes",
        "Resident memory of the node's processes, summed per Component",
        ["Component"],
        [([c], n) for c, n in sorted(rss.items())],
    )

    families.append(histogram_family([({"NodeId": node}, raylet.latency.snapshot())]))

    class Snapshot:
        def collect(self) -> Any:
            return families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot())
    return generate_latest(registry)
