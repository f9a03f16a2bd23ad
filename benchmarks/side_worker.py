"""One side of side_by_side.py: start a runtime, warm up, then run timed blocks of a line on
command (stdin: "<line> <seconds>"), printing calls per second for each, and how many calls the
command made in all. The lines are corebench's (../shared/anchors): tiny tasks and actor
calls, one at a time or 1,000 at once;
"quiet <line>" is the same line with task events off for its calls (enable_task_events=False:
a function declared so, the same actors' methods with the option), "loud <line>" with them on
(a function of its own and methods bound once, as the quiet ones are)."""

from __future__ import annotations

import os
import sys
import time

if sys.argv[1] == "ray":
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
else:
    import skate as ray

    ray.init(num_cpus=2)


@ray.remote
def small_value():
    return b"ok"


# SIDE_QUIET_EVENTS=1 (a control of side_by_side.py --toggle): the "quiet" lines record task
# events as the loud ones do, so a toggle run measures the harness against itself (A/A).
QUIET_EVENTS = os.environ.get("SIDE_QUIET_EVENTS") == "1"


@ray.remote(enable_task_events=QUIET_EVENTS)
def quiet_value():  # small_value with task events off (side_by_side.py --toggle)
    return b"ok"


@ray.remote(enable_task_events=True)
def loud_value():  # small_value with them on: a function of its own, as quiet_value is
    return b"ok"


@ray.remote
class Actor:
    def small_value(self):
        return b"ok"


@ray.remote
class AsyncActor:
    async def small_value(self):
        return b"ok"


a = Actor.remote()
aa = AsyncActor.remote()
ray.get([a.small_value.remote(), aa.small_value.remote(), small_value.remote()])
LINES = {
    "tasks sync": (1, lambda: ray.get(small_value.remote())),
    "tasks async": (1000, lambda: ray.get([small_value.remote() for _ in range(1000)])),
    "actor sync": (1, lambda: ray.get(a.small_value.remote())),
    "actor async": (1000, lambda: ray.get([a.small_value.remote() for _ in range(1000)])),
    "async-actor async": (1000, lambda: ray.get([aa.small_value.remote() for _ in range(1000)])),
}
# The same calls with task events off (Ray's enable_task_events=False), to the same actors,
# and ("loud") on: methods bound once on both sides, as a plain `a.small_value` is not.
qa = a.small_value.options(enable_task_events=QUIET_EVENTS)
qaa = aa.small_value.options(enable_task_events=QUIET_EVENTS)
la, laa = a.small_value.options(enable_task_events=True), aa.small_value.options(enable_task_events=True)
LINES.update(
    {
        "loud tasks sync": (1, lambda: ray.get(loud_value.remote())),
        "loud tasks async": (1000, lambda: ray.get([loud_value.remote() for _ in range(1000)])),
        "loud actor sync": (1, lambda: ray.get(la.remote())),
        "loud actor async": (1000, lambda: ray.get([la.remote() for _ in range(1000)])),
        "loud async-actor async": (1000, lambda: ray.get([laa.remote() for _ in range(1000)])),
        "quiet tasks sync": (1, lambda: ray.get(quiet_value.remote())),
        "quiet tasks async": (1000, lambda: ray.get([quiet_value.remote() for _ in range(1000)])),
        "quiet actor sync": (1, lambda: ray.get(qa.remote())),
        "quiet actor async": (1000, lambda: ray.get([qa.remote() for _ in range(1000)])),
        "quiet async-actor async": (1000, lambda: ray.get([qaa.remote() for _ in range(1000)])),
    }
)
for per_call, fn in LINES.values():
    for _ in range(100 if per_call == 1 else 2):
        fn()
print("ready", flush=True)
for command in sys.stdin:
    name, seconds = command.strip().rsplit(" ", 1)
    per_call, fn = LINES[name]
    fn()
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < float(seconds):
        fn()
        n += 1
    # calls per second of the timed loop, then every call this command made (with the first)
    print(per_call * n / (time.perf_counter() - start), per_call * (n + 1), flush=True)
ray.shutdown()
