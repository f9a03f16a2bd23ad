"""What a microsecond of extra work costs the actor async line, by the thread that does it.

    python benchmarks/thread_cost.py BLOCKS [US]

Each block times the line (1,000 calls to a sync actor, then one `get`) for a second in four
cases, in an order reversed every other block: no extra work; the actor's method spinning
US microseconds (the worker's main thread); the driver spinning US microseconds before each
call (its main thread); the driver's I/O thread spinning US microseconds per reply (in
`TaskManager.on_reply`). It prints each case's cost against the first, as the geometric mean
of the per-block ratios. Work moved from a thread whose microsecond costs more to one whose
microsecond costs less makes the line faster, even at the same CPU.
"""

from __future__ import annotations

import statistics
import sys
import time

import skate as ray
from skate.core_worker import task_manager


def spin(us: float) -> None:
    end = time.perf_counter() + us * 1e-6
    while time.perf_counter() < end:
        pass


ON_REPLY = [0.0]  # the driver's I/O thread's spin per reply, in microseconds
_on_reply = task_manager.TaskManager.on_reply


def _spinning_on_reply(self, entry, reply):
    if ON_REPLY[0]:
        spin(ON_REPLY[0])
    return _on_reply(self, entry, reply)


@ray.remote
class Spinner:
    us = 0.0

    def set(self, us):
        self.us = us

    def v(self):
        if self.us:
            spin(self.us)
        return b"ok"


def main() -> None:
    blocks = int(sys.argv[1])
    us = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    ray.init(num_cpus=2)
    task_manager.TaskManager.on_reply = _spinning_on_reply  # type: ignore[method-assign]
    actor = Spinner.remote()
    ray.get(actor.v.remote())

    def batch(driver_us: float) -> None:
        refs = []
        for _ in range(1000):
            if driver_us:
                spin(driver_us)
            refs.append(actor.v.remote())
        ray.get(refs)

    def rate(case: tuple[float, float, float]) -> float:
        worker_us, driver_us, io_us = case
        ray.get(actor.set.remote(worker_us))
        ON_REPLY[0] = io_us
        batch(driver_us)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < 1.0:
            batch(driver_us)
            n += 1
        ON_REPLY[0] = 0.0
        return 1000 * n / (time.perf_counter() - start)

    cases = [(0.0, 0.0, 0.0), (us, 0.0, 0.0), (0.0, us, 0.0), (0.0, 0.0, us)]
    names = ["nothing", "worker main thread", "driver main thread", "driver I/O thread"]
    rates: dict[tuple, list[float]] = {c: [] for c in cases}
    for b in range(blocks):
        for case in cases if b % 2 == 0 else cases[::-1]:
            rates[case].append(rate(case))
    base = rates[cases[0]]
    for name, case in zip(names, cases):
        ratios = [b / r for b, r in zip(base, rates[case])]
        median = statistics.median(rates[case])
        extra = 1e6 / median - 1e6 / statistics.median(base)
        cost = statistics.geometric_mean(ratios) - 1
        print(f"{name:20s} +{us:g} us: {median:9,.0f} calls/s  cost {cost:+6.1%}  ({extra:+.2f} us per call)")
    ray.shutdown()


if __name__ == "__main__":
    main()
