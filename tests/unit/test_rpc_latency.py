"""RPC latency histograms (skate.protocol.latency): what is measured, where, and at what cost."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from skate.protocol.connection import Connection, RemoteError
from skate.protocol.latency import BUCKETS, LatencyRecorder, TimedConnection, histogram_family
from skate.protocol.transport import connect, listen

TOKEN = b"latency-token"
_names = itertools.count()


def run(coro, timeout: float = 5.0):
    async def main():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(main())


def test_observe_puts_values_in_le_buckets_and_sums():
    rec = LatencyRecorder("gcs")
    rec.observe("get_nodes", 0.0001)  # on a bound: counts in that bucket (Prometheus' le)
    rec.observe("get_nodes", 0.003)
    rec.observe("get_nodes", 99.0)  # beyond the last bound: +Inf
    snap = rec.snapshot()
    assert snap["component"] == "gcs" and snap["bounds"] == list(BUCKETS)
    series = snap["methods"]["get_nodes"]
    assert len(series["buckets"]) == len(BUCKETS) + 1
    assert series["buckets"][0] == 1
    assert series["buckets"][BUCKETS.index(0.005)] == 1
    assert series["buckets"][-1] == 1
    assert sum(series["buckets"]) == 3
    assert series["sum"] == pytest.approx(99.0031)


def test_snapshot_is_a_copy():
    rec = LatencyRecorder("raylet")
    rec.observe("m", 0.01)
    snap = rec.snapshot()
    rec.observe("m", 0.01)
    assert sum(snap["methods"]["m"]["buckets"]) == 1


def test_histogram_family_is_cumulative_with_labels():
    from prometheus_client import CollectorRegistry, generate_latest

    rec = LatencyRecorder("raylet")
    for value in (0.0002, 0.002, 0.02):
        rec.observe("request_lease", value)
    family = histogram_family([({"NodeId": "abc"}, rec.snapshot())])

    class One:
        def collect(self):
            return [family]

    registry = CollectorRegistry()
    registry.register(One())
    text = generate_latest(registry).decode()
    labels = 'Component="raylet",Method="request_lease",NodeId="abc"'
    assert f'skate_rpc_latency_seconds_bucket{{{labels},le="0.00025"}} 1.0' in text
    assert f'skate_rpc_latency_seconds_bucket{{{labels},le="0.0025"}} 2.0' in text
    assert f'skate_rpc_latency_seconds_bucket{{{labels},le="+Inf"}} 3.0' in text
    assert f"skate_rpc_latency_seconds_count{{{labels}}} 3.0" in text


async def _pair(recorder: LatencyRecorder | None, handlers: dict):
    address = f"inproc://latency-{next(_names)}"
    accepted: list[Connection] = []
    listener = await listen(address, TOKEN, handlers, on_connection=accepted.append, recorder=recorder)
    client = await connect(address, TOKEN, {})
    return listener, client, accepted


def test_requests_are_timed_notifications_and_unknown_methods_not():
    async def main():
        rec = LatencyRecorder("gcs")
        seen = asyncio.Event()

        async def slow(conn, p):
            await asyncio.sleep(0.03)
            return p

        def note(conn, p):
            seen.set()

        handlers = {"echo": lambda c, p: p, "slow": slow, "fail": lambda c, p: 1 / 0, "note": note}
        listener, client, accepted = await _pair(rec, handlers)
        assert isinstance(accepted[0], TimedConnection)
        for i in range(5):
            assert await client.call("echo", i) == i
        assert await client.call("slow", "x") == "x"
        with pytest.raises(RemoteError):
            await client.call("fail")
        with pytest.raises(RemoteError):
            await client.call("no_such_method")
        client.notify("note", None)
        await seen.wait()
        methods = rec.snapshot()["methods"]
        client.close()
        listener.close()
        return methods

    methods = run(main())
    assert set(methods) == {"echo", "slow", "fail"}  # not the notification, not the unknown name
    assert sum(methods["echo"]["buckets"]) == 5
    assert sum(methods["fail"]["buckets"]) == 1
    slow = methods["slow"]
    assert sum(slow["buckets"]) == 1 and slow["sum"] >= 0.025  # an async handler: until its reply
    assert slow["buckets"][BUCKETS.index(0.025)] == 0


def test_no_recorder_means_the_plain_connection():
    """Workers and drivers listen without a recorder: not a TimedConnection, nothing timed."""

    async def main():
        listener, client, accepted = await _pair(None, {"echo": lambda c, p: p})
        assert await client.call("echo", 1) == 1
        kinds = (type(accepted[0]), type(client))
        client.close()
        listener.close()
        return kinds

    assert run(main()) == (Connection, Connection)


def test_connect_with_recorder_times_the_peers_requests():
    """The raylet's connection to the GCS carries requests from the GCS: timed too."""

    async def main():
        rec = LatencyRecorder("raylet")
        address = f"inproc://latency-{next(_names)}"
        accepted: list[Connection] = []
        listener = await listen(address, TOKEN, {}, on_connection=accepted.append)
        client = await connect(address, TOKEN, {"prepare": lambda c, p: True}, recorder=rec)
        await accepted[0].ready
        assert await accepted[0].call("prepare", None) is True
        client.close()
        listener.close()
        return rec.snapshot()["methods"]

    assert sum(run(main())["prepare"]["buckets"]) == 1


# -- the node endpoint's pure decision (skate.raylet.metrics_http) ----------------------------


def _decide(head: bytes, token: bytes = b"tok"):
    from skate.raylet import metrics_http

    return metrics_http.decide(metrics_http.parse_head(head), token, "")


def test_endpoint_needs_the_bearer_token_before_anything_else():
    assert _decide(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").status == 401
    assert _decide(b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n").status == 401
    assert _decide(b"GET /metrics HTTP/1.1\r\nAuthorization: Basic dG9r\r\n\r\n").status == 401
    assert _decide(b"GET /other HTTP/1.1\r\n\r\n").status == 401  # no path is revealed
    assert _decide(b"GET /metrics?token=tok HTTP/1.1\r\n\r\n").status == 401  # no URL tokens
    ok = _decide(b"GET /metrics?x=1 HTTP/1.1\r\nauthorization: Bearer tok\r\n\r\n")
    assert ok.status == 200 and ok.serve and not ok.head_only


def test_endpoint_answers_bad_requests():
    auth = b"Authorization: Bearer tok\r\n"
    assert _decide(b"GET /elsewhere HTTP/1.1\r\n" + auth + b"\r\n").status == 404
    assert _decide(b"POST /metrics HTTP/1.1\r\n" + auth + b"\r\n").status == 405
    assert _decide(b"HEAD /metrics HTTP/1.1\r\n" + auth + b"\r\n").head_only
    assert _decide(b"\x16\x03\x01garbage\r\n\r\n").status == 400
    assert _decide(b"GET /metrics\r\n\r\n").status == 400  # HTTP/0.9
    assert _decide(b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n").status == 400


def test_endpoint_responses_close_the_connection():
    from skate.raylet import metrics_http

    response = metrics_http.render(200, b"abc")
    assert response.startswith(b"HTTP/1.1 200 OK\r\n") and response.endswith(b"\r\n\r\nabc")
    assert b"Content-Length: 3\r\n" in response and b"Connection: close\r\n" in response
    assert metrics_http.render(200, b"abc", head_only=True).endswith(b"\r\n\r\n")
    assert b"WWW-Authenticate: Bearer" in metrics_http.render_error(401)
