"""Which event loop Skate's own loops run on."""

from __future__ import annotations

import pytest

from skate import _event_loop


@pytest.mark.timeout(10)
def test_asyncio_on_request_else_uvloop_when_installed(monkeypatch):
    monkeypatch.setenv("SKATE_EVENT_LOOP", "asyncio")
    assert _event_loop.kind() == "asyncio"
    loop = _event_loop.new_event_loop()
    try:
        assert type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()
    monkeypatch.delenv("SKATE_EVENT_LOOP")
    assert _event_loop.kind() == ("uvloop" if _event_loop.uvloop is not None else "asyncio")


@pytest.mark.timeout(10)
def test_an_unknown_loop_name_is_refused_naming_it(monkeypatch):
    monkeypatch.setenv("SKATE_EVENT_LOOP", "tokio")
    with pytest.raises(ValueError, match="SKATE_EVENT_LOOP.*'tokio'"):
        _event_loop.new_event_loop()
