"""What task events cost per call, in instructions: a count this VM's noise does not move.

    python benchmarks/events_instructions.py [async|actor|task] [ROUNDS]

One runtime (this tree) under `valgrind --tool=callgrind --trace-children=yes
--separate-threads=yes`. After a warm-up, each round runs a burst of 1,000 pipelined calls
with task events on ("loud") and one with them off ("quiet": Ray's
`enable_task_events=False`, on a function declared so or on an actor created so), in A B B A
order; every process's counters are zeroed before a burst and dumped after it, the dump
named after the side. The report interval is set past the run, so the figures are what each
call costs (the once-a-second send is a cost per second, not per call).

Prints, per process, the median instructions per call of each side (every thread summed)
and their difference. The quiet actor is a second actor, so its worker is a process of its
own: compare the two workers' lines. Needs valgrind; about a minute for the default 4 rounds.
Valgrind counts instructions in user space only, and its run is 50x slower than native, so
anything timed (leases, heartbeats) sees a very slow machine.
"""

from __future__ import annotations

import collections
import glob
import os
import re
import statistics
import subprocess
import sys
import tempfile

WORKLOAD = """
import subprocess, sys
import skate

kind, rounds = sys.argv[1], int(sys.argv[2])

@skate.remote
def small_value():
    return b"ok"

@skate.remote(enable_task_events=False)
def quiet_value():
    return b"ok"

@skate.remote
class AsyncActor:
    async def small_value(self):
        return b"ok"

@skate.remote
class Actor:
    def small_value(self):
        return b"ok"

skate.init(num_cpus=2)
if kind == "task":
    loud = lambda: skate.get([small_value.remote() for _ in range(1000)])
    quiet = lambda: skate.get([quiet_value.remote() for _ in range(1000)])
else:
    cls = AsyncActor if kind == "async" else Actor
    a, b = cls.remote(), cls.options(enable_task_events=False).remote()
    loud = lambda: skate.get([a.small_value.remote() for _ in range(1000)])
    quiet = lambda: skate.get([b.small_value.remote() for _ in range(1000)])
for _ in range(3):
    loud()
    quiet()
for r in range(rounds):
    for name in ("loud", "quiet") if r % 2 == 0 else ("quiet", "loud"):
        subprocess.run(["callgrind_control", "-z"], capture_output=True)
        (loud if name == "loud" else quiet)()
        subprocess.run(["callgrind_control", f"--dump={name}"], capture_output=True)
skate.shutdown()
"""


def count(kind: str, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Instructions per call by process ("driver" or its module's last part, and pid), side
    and burst."""
    out = tempfile.mkdtemp(prefix="skate-cg-")
    script = os.path.join(out, "workload.py")
    with open(script, "w") as f:
        f.write(WORKLOAD)
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--separate-threads=yes",
        "--trace-children=yes",
        "--trace-children-skip=*callgrind_control*,*perl*,*libexec*",
        f"--callgrind-out-file={out}/cg.%p",
        os.path.realpath(sys.executable),
        script,
        kind,
        str(rounds),
    ]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root, SKATE_TASK_EVENTS_REPORT_INTERVAL_MS="100000000")
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1800)
    totals: dict[tuple[str, int, str], int] = collections.defaultdict(int)  # (pid, dump, side)
    names: dict[str, str] = {}
    for path in glob.glob(f"{out}/cg.*.*"):  # cg.<pid>.<dump>-<thread>
        m = re.match(r".*/cg\.(\d+)\.(\d+)-\d+$", path)
        if not m:
            continue
        with open(path) as f:
            text = f.read(4096)
        side = re.search(r"^desc: Trigger: .*?(loud|quiet)", text, re.M)
        total = re.search(r"^summary: (\d+)", text, re.M)
        command = re.search(r"^cmd: (.*)$", text, re.M)
        if not side or not total:
            continue
        pid = m.group(1)
        totals[(pid, int(m.group(2)), side.group(1))] += int(total.group(1))
        module = re.search(r"-m (\S+)", command.group(1)) if command else None
        names[pid] = module.group(1).rsplit(".", 1)[-1] if module else "driver"
    found: dict[str, dict[str, list[float]]] = {}
    for (pid, _, side), total in sorted(totals.items()):
        found.setdefault(f"{names[pid]} {pid}", {"loud": [], "quiet": []})[side].append(total / 1000)
    return found


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "async"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    print(f"{kind}: instructions per call, median of {rounds} bursts of 1,000 (loud / quiet / difference)")
    sums = {"loud": 0.0, "quiet": 0.0}
    for name, sides in count(kind, rounds).items():
        if max(sides["loud"] + sides["quiet"], default=0) < 1000:  # idle processes
            continue
        med = {side: statistics.median(v) if v else 0.0 for side, v in sides.items()}
        for side in sums:
            sums[side] += med[side]
        _line(name, med["loud"], med["quiet"])
    _line("all processes", sums["loud"], sums["quiet"])


def _line(name: str, loud: float, quiet: float) -> None:
    print(f"  {name:22} {loud:9,.0f} {quiet:9,.0f} {loud - quiet:+8,.0f}")


if __name__ == "__main__":
    main()
