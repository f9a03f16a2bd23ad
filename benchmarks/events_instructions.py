"""What task events cost per call, in instructions: a count this VM's noise does not move.

    python benchmarks/events_instructions.py [async|actor|task] [BATCHES]

Runs the same workload twice under `valgrind --tool=callgrind --trace-children=yes` (events
on, then off): a fresh runtime, warm-up, every process's counters zeroed, BATCHES bursts of
1,000 pipelined calls, counters dumped. The report interval is set past the run, so the
figures are what each call costs; the once-a-second send is a cost per second, not per call.
Prints instructions per call by process, on and off, and their totals. Needs valgrind; about a minute
per side for the default 3 batches. A run under valgrind is 50x slower than native, so
anything timed (leases, heartbeats) sees a very slow machine.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import tempfile

WORKLOAD = """
import os, subprocess, sys
import skate

kind, batches = sys.argv[1], int(sys.argv[2])

@skate.remote
def small_value():
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
    burst = lambda: skate.get([small_value.remote() for _ in range(1000)])
else:
    a = (AsyncActor if kind == "async" else Actor).remote()
    burst = lambda: skate.get([a.small_value.remote() for _ in range(1000)])
for _ in range(3):
    burst()
subprocess.run(["callgrind_control", "-z"], capture_output=True)
for _ in range(batches):
    burst()
subprocess.run(["callgrind_control", "--dump=measured"], capture_output=True)
skate.shutdown()
"""


def count(kind: str, batches: int, env: dict[str, str]) -> dict[str, int]:
    """Instructions by process (the command's module, or "driver") over the measured part."""
    out = tempfile.mkdtemp(prefix="skate-cg-")
    script = os.path.join(out, "workload.py")
    with open(script, "w") as f:
        f.write(WORKLOAD)
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--trace-children=yes",
        "--trace-children-skip=*callgrind_control*,*perl*,*libexec*",
        f"--callgrind-out-file={out}/cg.%p",
        os.path.realpath(sys.executable),
        script,
        kind,
        str(batches),
    ]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root, **env)
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1200)
    found: dict[str, int] = {}
    for path in glob.glob(f"{out}/cg.*.1"):  # the dumps named "measured"
        with open(path) as f:
            text = f.read(4096)
        total = re.search(r"^summary: (\d+)", text, re.M)
        command = re.search(r"^cmd: (.*)$", text, re.M)
        if not total or not command:
            continue
        module = re.search(r"-m (\S+)", command.group(1))
        name = module.group(1).rsplit(".", 1)[-1] if module else "driver"
        if int(total.group(1)) > 1000 * batches:  # (idle zygotes and helpers left out)
            found[f"{name} {len(found)}"] = int(total.group(1))
    return found


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "async"
    batches = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    calls = 1000 * batches
    on = count(kind, batches, {"SKATE_TASK_EVENTS_REPORT_INTERVAL_MS": "100000000"})
    off = count(kind, batches, {"SKATE_TASK_EVENTS": "0"})
    print(f"{kind}: instructions per call over {calls} calls (events on / off / difference)")
    for label, side in (("on", on), ("off", off)):
        print(f"  {label}: " + ", ".join(f"{k} {v / calls:,.0f}" for k, v in sorted(side.items())))
    print(f"  all processes: on {sum(on.values()) / calls:,.0f}, off {sum(off.values()) / calls:,.0f}")


if __name__ == "__main__":
    main()
