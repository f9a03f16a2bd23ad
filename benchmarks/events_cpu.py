"""What task events cost per call in CPU time, process by process, within one runtime.

    python benchmarks/events_cpu.py [ROUNDS] [SECONDS] [lines]

One runtime. Each line's calls run with task events on ("loud": a function of its own, or
the actor's method with `enable_task_events=True`) and off (`enable_task_events=False`),
alternating A B B A for ROUNDS rounds of SECONDS each. Every process's CPU time (the driver,
the GCS, the raylet, the workers; every thread, in nanoseconds, from
/proc/<pid>/task/*/schedstat) is read around each window and divided by the calls made in it.
Prints, per line, the median calls per second and CPU per call on and off, then each busy
process's share. Lines: "tasks async", "actor async" or "async-actor async" (comma-separated;
all by default). Linux only. The windows include the once-a-second sends. A repeat of a run
moves a line's total by about 2 µs per call (docs/benchmarks.md, session 11).
"""

from __future__ import annotations

import glob
import statistics
import sys
import time
from collections.abc import Callable

import psutil

import skate as ray


@ray.remote(enable_task_events=True)
def loud_value():
    return b"ok"


@ray.remote(enable_task_events=False)
def quiet_value():
    return b"ok"


@ray.remote
class Actor:
    def small_value(self):
        return b"ok"


@ray.remote
class AsyncActor:
    async def small_value(self):
        return b"ok"


def cpu_ns(pids: list[int]) -> dict[int, int]:
    """Each process's CPU time so far, over all its threads (ns)."""
    out = {}
    for pid in pids:
        total = 0
        for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
            try:
                with open(path) as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError):
                pass  # a thread that ended meanwhile
        out[pid] = total
    return out


def measure(on: Callable, off: Callable, rounds: int, secs: float, pids: list[int]) -> dict:
    """Per side: calls per second and CPU ns per call by process, one figure per window."""
    seen: dict = {side: {"rate": [], "cpu": {pid: [] for pid in pids}} for side in ("on", "off")}
    for r in range(rounds):
        for side in ("on", "off", "off", "on") if r % 2 == 0 else ("off", "on", "on", "off"):
            fn = on if side == "on" else off
            before, start, calls = cpu_ns(pids), time.perf_counter(), 0
            while time.perf_counter() - start < secs:
                fn()
                calls += 1000
            took, after = time.perf_counter() - start, cpu_ns(pids)
            seen[side]["rate"].append(calls / took)
            for pid in pids:
                seen[side]["cpu"][pid].append((after[pid] - before[pid]) / calls)
    return seen


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    ray.init(num_cpus=2)
    a, aa = Actor.remote(), AsyncActor.remote()
    la, qa = (a.small_value.options(enable_task_events=flag) for flag in (True, False))
    laa, qaa = (aa.small_value.options(enable_task_events=flag) for flag in (True, False))
    lines: dict[str, tuple[Callable, Callable]] = {
        "tasks async": (
            lambda: ray.get([loud_value.remote() for _ in range(1000)]),
            lambda: ray.get([quiet_value.remote() for _ in range(1000)]),
        ),
        "actor async": (
            lambda: ray.get([la.remote() for _ in range(1000)]),
            lambda: ray.get([qa.remote() for _ in range(1000)]),
        ),
        "async-actor async": (
            lambda: ray.get([laa.remote() for _ in range(1000)]),
            lambda: ray.get([qaa.remote() for _ in range(1000)]),
        ),
    }
    chosen = sys.argv[3].split(",") if len(sys.argv) > 3 else list(lines)
    for on, off in lines.values():
        for _ in range(3):  # warm up: leases, workers, caches
            on()
            off()
    me = psutil.Process()
    procs = [me, *me.children(recursive=True)]
    names = {}
    for p in procs:
        try:
            names[p.pid] = " ".join(p.cmdline()[1:3])[-32:]
        except psutil.Error:
            pass
    pids = list(names)
    for line in chosen:
        seen = measure(*lines[line], rounds, secs, pids)
        rate = {s: statistics.median(seen[s]["rate"]) for s in seen}
        total = {s: statistics.median([sum(w) for w in zip(*seen[s]["cpu"].values())]) for s in seen}
        print(
            f"{line}: calls/s on/off {rate['on'] / rate['off']:.3f}; CPU per call on {total['on']:,.0f} ns, "
            f"off {total['off']:,.0f} ns ({total['on'] - total['off']:+,.0f})"
        )
        for pid in pids:
            on_ns = statistics.median(seen["on"]["cpu"][pid])
            off_ns = statistics.median(seen["off"]["cpu"][pid])
            if max(on_ns, off_ns) > 50:
                print(f"    {names[pid]:32s} on {on_ns:8,.0f}  off {off_ns:8,.0f}  ({on_ns - off_ns:+,.0f})")
    ray.shutdown()


if __name__ == "__main__":
    main()
