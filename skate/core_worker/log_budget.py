"""How many lines of worker output may be forwarded to drivers: a token bucket over lines.

Pure (the caller passes the clock), so the worker's LogStream and the raylet share one exact,
testable rule: `rate` lines per second on average, bursts up to `burst`; what does not fit is
counted, so the driver can be told how much it did not get.
"""

from __future__ import annotations


class LogBudget:
    __slots__ = ("rate", "burst", "_tokens", "_last", "dropped")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._last = now
        self.dropped = 0  # lines refused since the last take_dropped()

    def admit(self, lines: int, now: float) -> int:
        """How many of `lines` may go now; the rest are counted as dropped."""
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
            self._last = now
        allowed = min(lines, int(self._tokens))
        self._tokens -= allowed
        self.dropped += lines - allowed
        return allowed

    def take_dropped(self) -> int:
        """The count of dropped lines so far, reset to zero."""
        dropped, self.dropped = self.dropped, 0
        return dropped


def dropped_notice(count: int, rate: float, where: str) -> str:
    return (
        f"[skate] {count} lines of output were not forwarded (more than {rate:g} lines/s); "
        f"they are in {where}"
    )
