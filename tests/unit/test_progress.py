"""The command line's progress display (skate.scripts._progress.Progress)."""

from __future__ import annotations

import io
import threading

import pytest

from skate.scripts._progress import Progress


class Stream(io.StringIO):
    """A StringIO that signals each write (to wait for output without sleeping blindly)."""

    def __init__(self) -> None:
        super().__init__()
        self.wrote = threading.Event()

    def write(self, text: str) -> int:
        n = super().write(text)
        self.wrote.set()
        return n


@pytest.mark.timeout(10)
def test_pipe_gets_a_line_every_interval_and_nothing_for_a_quick_wait():
    quick = Stream()
    with Progress("starting", stream=quick, tty=False, every=60):
        pass
    assert quick.getvalue() == ""
    slow = Stream()
    with Progress("starting the head", stream=slow, tty=False, every=0.05):
        assert slow.wrote.wait(5)
    lines = slow.getvalue().splitlines()
    assert lines and all(line.startswith("starting the head: still waiting (") for line in lines)
    assert "\r" not in slow.getvalue()


@pytest.mark.timeout(10)
def test_terminal_gets_a_spinner_with_elapsed_time_erased_at_the_end():
    out = Stream()
    progress = Progress("waiting for job 'x' to start", stream=out, tty=True, tick=0.01).start()
    assert out.wrote.wait(5)
    progress.stop()
    progress.stop()  # idempotent
    text = out.getvalue()
    assert text.startswith("\r") and "waiting for job 'x' to start (0s)" in text
    assert text.endswith("\r") and text.rstrip("\r").endswith(" ")  # the line is blanked


def test_closed_stream_is_not_an_error():
    out = Stream()
    out.close()
    with Progress("x", stream=out, tty=True, tick=0.01):
        pass
