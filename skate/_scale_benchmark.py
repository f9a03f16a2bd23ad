"""Scale benchmark (issue 19): many queued tasks, many ref arguments, many refs in one get,
many actors; time and peak memory of the processes involved, Skate or Ray.

    python -m skate._scale_benchmark [--impl skate|ray] [--tasks N] [--args N] [--gets N]
                                     [--actors N] [--batch N] [--nodes N] [--only a,b,c,d]

The same script runs under Ray (`/work/rayvenv/bin/python -m skate._scale_benchmark --impl ray`
with this checkout on PYTHONPATH): it touches only the public API both share, imported as `ray`.

  (a) `--tasks` no-op tasks all submitted before any get, then one get of them all;
  (b) one task taking `--args` small put refs as arguments;
  (c) one get of `--gets` task results;
  (d) `--actors` tiny actors (num_cpus=0), `--batch` alive at a time, each called once then
      killed, on a cluster of `--nodes` nodes on this machine.

Peak RSS is sampled by a thread (psutil, every `--interval` s) over the driver and every process
below it, grouped by role (driver, GCS, raylet(s), workers: the summed RSS of the group at its
highest sample). Prints a markdown table at the end.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

ROLES = ("driver", "gcs", "raylet", "workers")


def _role(proc: psutil.Process, me: int) -> str | None:
    """Which part of the runtime a process is, from its command line (None: not ours)."""
    if proc.pid == me:
        return "driver"
    try:
        cmd = " ".join(proc.cmdline())
        name = proc.name()
    except psutil.Error:
        return None
    # By program name for Ray (its workers' command lines name the raylet's and GCS's sockets).
    if name == "gcs_server" or "skate.gcs.server" in cmd:
        return "gcs"
    if name == "raylet" or "skate.raylet.server" in cmd:
        return "raylet"
    if "dashboard" in cmd or "log_monitor" in cmd or "monitor.py" in cmd:
        return None  # helpers outside the measured path
    return "workers"


class PeakRss:
    """Samples the RSS of this process and its descendants in a thread; keeps each role's peak."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.peaks: dict[str, int] = dict.fromkeys(ROLES, 0)
        self.counts: dict[str, int] = dict.fromkeys(ROLES, 0)
        self._procs: dict[int, tuple[psutil.Process, str | None]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="peak-rss")
        self._me = os.getpid()
        self._root = psutil.Process(self._me)

    def __enter__(self) -> PeakRss:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        try:
            tree = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            return
        sums = dict.fromkeys(ROLES, 0)
        counts = dict.fromkeys(ROLES, 0)
        for proc in tree:
            known = self._procs.get(proc.pid)
            if known is None:
                known = self._procs[proc.pid] = (proc, _role(proc, self._me))
            proc, role = known
            if role is None:
                continue
            try:
                sums[role] += proc.memory_info().rss
            except psutil.Error:
                continue
            counts[role] += 1
        for role in ROLES:
            self.peaks[role] = max(self.peaks[role], sums[role])
            self.counts[role] = max(self.counts[role], counts[role])


class Row:
    """One line of the results table."""

    def __init__(self, name: str):
        self.name = name
        self.seconds = 0.0
        self.rate = ""
        self.notes = ""
        self.peaks: dict[str, int] = {}
        self.counts: dict[str, int] = {}


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f}" if n else "-"


def print_table(impl: str, rows: list[Row]) -> None:
    print()
    print(f"| {impl} | wall s | rate | driver MiB | GCS MiB | raylet MiB | workers MiB | notes |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        p, c = r.peaks, r.counts
        raylets = _mib(p.get("raylet", 0)) + (f" ({c['raylet']})" if c.get("raylet", 0) > 1 else "")
        workers = _mib(p.get("workers", 0)) + (f" ({c['workers']} procs)" if c.get("workers") else "")
        print(
            f"| {r.name} | {r.seconds:.2f} | {r.rate} | {_mib(p.get('driver', 0))} | "
            f"{_mib(p.get('gcs', 0))} | {raylets} | {workers} | {r.notes} |"
        )
    print(flush=True)


def _measure(name: str, interval: float, body: Callable[[Row], None]) -> Row:
    row = Row(name)
    gc.collect()
    with PeakRss(interval) as rss:
        start = time.perf_counter()
        body(row)
        row.seconds = time.perf_counter() - start
    row.peaks, row.counts = rss.peaks, rss.counts
    print(f"  {name}: {row.seconds:.2f} s {row.rate} {row.notes}", flush=True)
    return row


def bench_tasks(ray: Any, n: int, interval: float) -> Row:
    """(a) n no-op tasks, all submitted before the one get of them all."""

    @ray.remote
    def noop():
        return None

    ray.get([noop.remote() for _ in range(50)])  # warm: workers started, function exported

    def body(row: Row) -> None:
        start = time.perf_counter()
        refs = [noop.remote() for _ in range(n)]
        submitted = time.perf_counter() - start
        values = ray.get(refs)
        assert len(values) == n and values[-1] is None
        del refs, values
        total = time.perf_counter() - start
        row.rate = f"{n / total:,.0f} tasks/s"
        row.notes = f"submit {submitted:.1f} s"

    return _measure(f"(a) {n:,} queued no-op tasks", interval, body)


def bench_args(ray: Any, n: int, interval: float) -> Row:
    """(b) one task with n small put refs as arguments."""

    @ray.remote
    def count(*values):
        return len(values)

    refs = [ray.put(i) for i in range(n)]

    def body(row: Row) -> None:
        assert ray.get(count.remote(*refs)) == n

    row = _measure(f"(b) one task, {n:,} ref args", interval, body)
    row.rate = f"{n / row.seconds:,.0f} args/s"
    return row


def bench_get(ray: Any, n: int, interval: float) -> Row:
    """(c) one get of n task results (the tasks finish before the get is timed)."""

    @ray.remote
    def one():
        return 1

    refs = [one.remote() for _ in range(n)]
    ray.wait(refs, num_returns=n, timeout=None, fetch_local=False)

    def body(row: Row) -> None:
        assert sum(ray.get(refs)) == n

    row = _measure(f"(c) get of {n:,} refs", interval, body)
    row.rate = f"{n / row.seconds:,.0f} refs/s"
    return row


def bench_actors(ray: Any, n: int, batch: int, interval: float) -> Row:
    """(d) n tiny actors, `batch` alive at a time: created, called once, killed."""

    class _Tiny:
        def ping(self):
            return 1

    Tiny = ray.remote(num_cpus=0)(_Tiny)  # a call, not a decorator: type checkers keep a class's type

    def body(row: Row) -> None:
        done = 0
        while done < n:
            size = min(batch, n - done)
            actors = [Tiny.remote() for _ in range(size)]
            assert sum(ray.get([a.ping.remote() for a in actors])) == size
            for a in actors:
                ray.kill(a)
            del actors
            done += size
        row.notes = f"{batch} alive at a time"

    row = _measure(f"(d) {n:,} actors", interval, body)
    row.rate = f"{n / row.seconds:,.1f} actors/s"
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m skate._scale_benchmark", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--impl", choices=("skate", "ray"), default="skate")
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--args", type=int, default=10_000)
    parser.add_argument("--gets", type=int, default=10_000)
    parser.add_argument("--actors", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=200, help="actors alive at a time in (d)")
    parser.add_argument("--nodes", type=int, default=3, help="nodes of the cluster of (d)")
    parser.add_argument(
        "--num-cpus", type=int, default=2, help="CPUs of the node of (a)-(c), and of each node of (d)"
    )
    parser.add_argument("--only", default="a,b,c,d", help="which parts to run, e.g. a,c")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between RSS samples")
    opts = parser.parse_args(argv)
    only = {p.strip() for p in opts.only.split(",") if p.strip()}
    ray: Any = importlib.import_module("ray" if opts.impl == "ray" else "skate")
    print(f"{opts.impl} {getattr(ray, '__version__', '')}: parts {','.join(sorted(only))}", flush=True)
    rows: list[Row] = []
    if only & {"a", "b", "c"}:
        ray.init(num_cpus=opts.num_cpus)
        try:
            if "a" in only:
                rows.append(bench_tasks(ray, opts.tasks, opts.interval))
            if "b" in only:
                rows.append(bench_args(ray, opts.args, opts.interval))
            if "c" in only:
                rows.append(bench_get(ray, opts.gets, opts.interval))
        finally:
            ray.shutdown()
    if "d" in only:
        cluster_utils = importlib.import_module(("ray" if opts.impl == "ray" else "skate") + ".cluster_utils")
        cluster = cluster_utils.Cluster()
        try:
            for _ in range(opts.nodes):
                cluster.add_node(num_cpus=opts.num_cpus)
            ray.init(address=cluster.address)
            try:
                rows.append(bench_actors(ray, opts.actors, opts.batch, opts.interval))
            finally:
                ray.shutdown()
        finally:
            cluster.shutdown()
    print_table(opts.impl, rows)


if __name__ == "__main__":
    main()
