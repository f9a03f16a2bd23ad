"""Retiring a worker the pool no longer needs: the raylet's side (`Raylet._retire`: kill once
the worker answered, or after the timeout, and never a process that is gone) and the
worker's (`CoreWorker._h_retire`: its last task events go to the GCS as a request)."""

from __future__ import annotations

import asyncio
import types

import pytest

from skate.core_worker.core import CoreWorker
from skate.core_worker.task_events import TaskEventBuffer
from skate.protocol.messages import TaskSpec
from skate.raylet import server


class FakeZygote:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, line: str) -> None:
        self.sent.append(line)


def _raylet(pids: dict) -> types.SimpleNamespace:
    return types.SimpleNamespace(worker_pids=pids, _stopped=False, zygote=FakeZygote())


class Conn:
    """A worker's connection whose `retire` request answers when told (or never)."""

    def __init__(self, answer: bool | None) -> None:
        self.answer = answer
        self.asked: list[str] = []

    async def call(self, method: str, payload=None):
        self.asked.append(method)
        if self.answer is None:
            await asyncio.Event().wait()  # never answers
        if not self.answer:
            raise RuntimeError("no method 'retire'")  # (an older worker)
        return True


@pytest.mark.timeout(10)
@pytest.mark.parametrize("answer", [True, False])
def test_the_raylet_kills_a_retiring_worker_once_it_answered(answer):
    raylet = _raylet({"w1": 42})
    conn = Conn(answer)
    asyncio.run(server.Raylet._retire(raylet, "w1", 42, conn))  # type: ignore[arg-type]
    assert conn.asked == ["retire"] and raylet.zygote.sent == ["kill 42"]


@pytest.mark.timeout(10)
def test_a_worker_that_does_not_answer_is_killed_after_the_timeout(monkeypatch):
    monkeypatch.setattr(server, "RETIRE_TIMEOUT_S", 0.05)
    raylet = _raylet({"w1": 42})
    asyncio.run(server.Raylet._retire(raylet, "w1", 42, Conn(None)))  # type: ignore[arg-type]
    assert raylet.zygote.sent == ["kill 42"]


@pytest.mark.timeout(10)
def test_a_worker_gone_meanwhile_is_not_killed_again():
    raylet = _raylet({})  # it exited while retiring: its pid may be another process's now
    asyncio.run(server.Raylet._retire(raylet, "w1", 42, Conn(True)))  # type: ignore[arg-type]
    assert raylet.zygote.sent == []


class FakeGcs:
    closed = False

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    async def call(self, method: str, payload: dict):
        self.calls.append((method, payload))


def _core(gcs) -> types.SimpleNamespace:
    events = TaskEventBuffer()
    spec = TaskSpec(b"t" * 16, "f", 1, ["w", "addr"], "01000000", sent_at=5.0)
    events.ran(spec, 1.0, 0.5)
    core = types.SimpleNamespace(
        task_events=events,
        gcs=gcs,
        node_id="n",
        worker_id="w",
        submitter=types.SimpleNamespace(manager=types.SimpleNamespace(pending={})),
    )
    core._task_events_batch = types.MethodType(CoreWorker._task_events_batch, core)
    return core


@pytest.mark.timeout(10)
def test_a_retiring_worker_sends_its_last_task_events_and_waits_for_the_gcs():
    gcs = FakeGcs()
    core = _core(gcs)
    assert asyncio.run(CoreWorker._h_retire(core, None, None)) is True  # type: ignore[arg-type]
    [(method, batch)] = gcs.calls
    assert method == "add_task_events" and batch["done_records"] == 1 and batch["worker_id"] == "w"
    assert not core.task_events.short and not core.task_events.done  # taken: sent once


@pytest.mark.timeout(10)
def test_a_retiring_worker_without_a_gcs_answers_at_once():
    gcs = FakeGcs()
    gcs.closed = True
    core = _core(gcs)
    assert asyncio.run(CoreWorker._h_retire(core, None, None)) is True  # type: ignore[arg-type]
    assert gcs.calls == [] and (core.task_events.short or core.task_events.done)  # kept, unsent
