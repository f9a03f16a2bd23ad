"""A chaos workload: tasks and actor calls while workers are SIGKILLed and a node is removed.

Three kinds of work run in batches until the time is up:
- `square` tasks with max_retries=-1: every result must arrive, and be right;
- `fragile` tasks with max_retries=0: a result is right, or the task failed with
  WorkerCrashedError (the documented error for a task whose worker died without retries);
- calls to actors with max_restarts=-1 and max_task_retries=-1: every result must arrive.
Meanwhile a killer SIGKILLs a random worker process every `kill_interval` seconds, and halfway
through one node is removed (and another added). A result that is wrong, missing (a hang), or
an error of another type counts as lost; the run passes when nothing is lost.

Run the long version with `python -m tests.chaos_workload --duration 300`; the test suite runs
a short one (tests/integration/test_chaos.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field

import psutil

import skate
from skate.cluster_utils import Cluster
from skate.exceptions import WorkerCrashedError

STORE = 200 * 1024 * 1024


@dataclass
class ChaosReport:
    seconds: float = 0.0
    tasks_run: int = 0
    actor_calls: int = 0
    kills: int = 0
    nodes_removed: int = 0
    fragile_crashed: int = 0  # fragile tasks failed with WorkerCrashedError (allowed)
    lost: int = 0  # wrong results, hangs, unexpected errors: must be 0
    problems: list[str] = field(default_factory=list)


def _workers(root: str) -> list[psutil.Process]:
    """Worker processes of clusters under `root`: the children of each node's zygote."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if "skate.raylet.zygote" in cmd and root in cmd:
                out.extend(p.children())
        except psutil.Error:
            continue
    return out


class Killer(threading.Thread):
    def __init__(self, root: str, interval: float, rng: random.Random):
        super().__init__(name="chaos-killer", daemon=True)
        self.root = root
        self.interval = interval
        self.rng = rng
        self.kills = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            workers = _workers(self.root)
            if not workers:
                continue
            victim = self.rng.choice(workers)
            try:
                os.kill(victim.pid, signal.SIGKILL)
                self.kills += 1
            except OSError:
                pass


@skate.remote(max_retries=-1)
def square(i: int) -> int:
    return i * i


@skate.remote(max_retries=0)
def fragile(i: int) -> int:
    return i + 1


@skate.remote(max_restarts=-1, max_task_retries=-1)
class Echo:
    def echo(self, i: int) -> int:
        return -i


def run(duration: float = 30.0, kill_interval: float = 0.1, seed: int = 0, batch: int = 200) -> ChaosReport:
    rng = random.Random(seed)
    report = ChaosReport()
    root = os.environ.get("SKATE_TEMP_DIR", "/tmp")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "object_store_memory": STORE})
    doomed = cluster.add_node(num_cpus=2, object_store_memory=STORE)
    killer = Killer(root, kill_interval, rng)
    start = time.monotonic()
    try:
        skate.init(address=cluster.address)
        actors = [Echo.remote() for _ in range(3)]
        killer.start()
        removed = False
        n = 0
        while time.monotonic() - start < duration:
            if not removed and time.monotonic() - start > duration / 2:
                cluster.remove_node(doomed)
                cluster.add_node(num_cpus=2, object_store_memory=STORE)
                report.nodes_removed += 1
                removed = True
            base = n * batch
            squares = [square.remote(base + i) for i in range(batch)]
            fragiles = [fragile.remote(base + i) for i in range(batch // 4)]
            calls = [actors[i % len(actors)].echo.remote(base + i) for i in range(batch // 4)]
            _check(report, "square", squares, [(base + i) ** 2 for i in range(batch)], allow=())
            _check(
                report,
                "fragile",
                fragiles,
                [base + i + 1 for i in range(batch // 4)],
                allow=(WorkerCrashedError,),
            )
            _check(report, "actor", calls, [-(base + i) for i in range(batch // 4)], allow=())
            report.tasks_run += len(squares) + len(fragiles)
            report.actor_calls += len(calls)
            n += 1
    finally:
        killer.stop.set()
        killer.join(5)
        report.kills = killer.kills
        report.seconds = round(time.monotonic() - start, 1)
        skate.shutdown()
        cluster.shutdown()
    return report


def _check(report: ChaosReport, kind: str, refs: list, expected: list, allow: tuple) -> None:
    for ref, want in zip(refs, expected):
        try:
            got = skate.get(ref, timeout=120)
        except allow:
            report.fragile_crashed += 1
            continue
        except Exception as exc:
            report.lost += 1
            if len(report.problems) < 20:
                report.problems.append(f"{kind}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        if got != want:
            report.lost += 1
            if len(report.problems) < 20:
                report.problems.append(f"{kind}: got {got!r}, expected {want!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of workload")
    parser.add_argument("--kill-interval", type=float, default=0.1, help="seconds between worker kills")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    report = run(args.duration, args.kill_interval, args.seed)
    print(json.dumps(asdict(report), indent=2))
    raise SystemExit(1 if report.lost else 0)


if __name__ == "__main__":
    main()
