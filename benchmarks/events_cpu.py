"""What task events cost per call in CPU time, process by process, within one runtime.

    python benchmarks/events_cpu.py [ROUNDS] [SECONDS] [lines]

One runtime (side_worker.py's, this tree's), whose lines run with task events on ("loud") and
off ("quiet": `enable_task_events=False`), alternating A B B A for ROUNDS rounds of SECONDS
each: the calls `side_by_side.py --toggle` times. Every process's CPU time (the driver, the
GCS, the raylet, the workers; every thread, in nanoseconds, from /proc/<pid>/task/*/schedstat)
is read around each run and divided by the calls the run made. Prints, per line, calls per
second on/off and the CPU per call on and off (medians), then each busy process's share.
Lines: side_by_side.py's, comma-separated (default: the three pipelined ones). Linux only.
The runs include the once-a-second sends. A repeat of a run moves a line's total by about
2 µs per call (docs/benchmarks.md, session 11).
"""

from __future__ import annotations

import glob
import statistics
import sys

import psutil
from side_by_side import ROOT, run_counted, start, stop

PIPELINED = ["tasks async", "actor async", "async-actor async"]
ABBA = (("loud", "quiet", "quiet", "loud"), ("quiet", "loud", "loud", "quiet"))  # by round parity


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


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    lines = sys.argv[3].split(",") if len(sys.argv) > 3 else PIPELINED
    proc = start(ROOT)
    names = {}
    for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]:
        try:
            names[p.pid] = " ".join(p.cmdline()[1:3])[-32:]
        except psutil.Error:
            pass
    pids = list(names)
    for line in lines:
        rates: dict[str, list[float]] = {"loud": [], "quiet": []}
        per_call: dict[str, dict[int, list[float]]] = {s: {pid: [] for pid in pids} for s in rates}
        for r in range(rounds):
            for side in ABBA[r % 2]:
                before = cpu_ns(pids)
                rate, calls = run_counted(proc, f"{side} {line}", secs)
                after = cpu_ns(pids)
                rates[side].append(rate)
                for pid in pids:
                    per_call[side][pid].append((after[pid] - before[pid]) / calls)
        total = {s: statistics.median([sum(w) for w in zip(*per_call[s].values())]) for s in rates}
        ratio = statistics.median(rates["loud"]) / statistics.median(rates["quiet"])
        print(
            f"{line}: calls/s on/off {ratio:.3f}; CPU per call on {total['loud']:,.0f} ns, "
            f"off {total['quiet']:,.0f} ns ({total['loud'] - total['quiet']:+,.0f})"
        )
        for pid in pids:
            on_ns, off_ns = (statistics.median(per_call[s][pid]) for s in ("loud", "quiet"))
            if max(on_ns, off_ns) > 50:
                print(f"    {names[pid]:32s} on {on_ns:8,.0f}  off {off_ns:8,.0f}  ({on_ns - off_ns:+,.0f})")
    stop(proc, ROOT)


if __name__ == "__main__":
    main()
