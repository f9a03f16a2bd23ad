"""Memory accounting on a real cluster (issue 20): get_memory_stats() and `skate memory`.

Each figure is checked against psutil readings of the same processes; a worker reading a large
object from the store shows it as shared pages, not heap; one building a large list shows it as
heap; the GCS's tables grow with named actors; and `skate memory`'s options.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import psutil
import pytest

import skate
from skate.util import state
from tests.conftest import assert_no_leftovers

MB = 2**20
BIG = 25_000_000  # float64 elements: 200 MB


def tolerance(n: int) -> int:
    """Readings taken a moment apart by two processes: within 10% or 16 MiB."""
    return max(n // 10, 16 * MB)


@pytest.fixture(scope="module")
def mem_cluster():
    import skate.core_worker.objects as objects_mod
    import skate.core_worker.submitter as submitter_mod

    if skate.is_initialized():
        skate.shutdown()
    saved = (objects_mod.RECORD_CALL_SITES, submitter_mod.RECORD_CALL_SITES)
    objects_mod.RECORD_CALL_SITES = submitter_mod.RECORD_CALL_SITES = True  # for --group-by STACK_TRACE
    skate.init(num_cpus=2, object_store_memory=600 * MB)
    yield skate
    skate.shutdown()
    objects_mod.RECORD_CALL_SITES, submitter_mod.RECORD_CALL_SITES = saved
    assert_no_leftovers()


@skate.remote(num_cpus=0)
class Holder:
    """Keeps what it is given or builds, and touches every page of it."""

    def __init__(self) -> None:
        self.kept: object = None

    def read(self, refs: list) -> float:
        self.kept = skate.get(refs[0])
        return float(self.kept.sum())  # faults in every page of the object

    def build_list(self, n: int) -> int:
        self.kept = [float(i) for i in range(n)]  # a pointer array and n float objects
        return len(self.kept)

    def pid(self) -> int:
        return os.getpid()


def process(stats: dict, pid: int) -> dict:
    for node in stats["nodes"]:
        for p in [node["raylet"], *node["processes"]]:
            if p["pid"] == pid:
                return p
    raise AssertionError(f"pid {pid} not in the memory report")


def arena_rss(pid: int) -> int:
    return sum(m.rss for m in psutil.Process(pid).memory_maps(grouped=True) if "/skate-" in m.path)


@pytest.mark.timeout(90)
def test_each_figure_matches_psutil_readings_of_the_same_process(mem_cluster):
    ref = skate.put(np.ones(BIG // 4))  # 50 MB in the store
    holder = Holder.remote()
    assert skate.get(holder.read.remote([ref]), timeout=60) == BIG // 4
    stats = state.get_memory_stats()
    [node] = stats["nodes"]
    procs = [("gcs", stats["gcs"]["process"]), ("raylet", node["raylet"])]
    procs += [(p["role"], p) for p in node["processes"]]
    roles = {role for role, _ in procs}
    assert {"gcs", "raylet", "zygote", "driver", "actor"} <= roles, roles
    assert process(stats, os.getpid())["role"] == "driver"
    for role, fig in procs:
        info = psutil.Process(fig["pid"]).memory_info()
        assert abs(fig["rss"] - info.rss) <= tolerance(info.rss), (role, fig, info)
        assert abs(fig["shared"] - info.shared) <= tolerance(info.shared), (role, fig, info)
        assert abs(fig["heap"] - (info.rss - info.shared)) <= tolerance(info.rss - info.shared), (role, fig)
        assert fig["heap"] == fig["rss"] - fig["shared"]
        assert abs(fig["store_mapped"] - arena_rss(fig["pid"])) <= tolerance(fig["store_mapped"]), (role, fig)
    # the store: the same figures as the store's own statistics
    store = state.object_store_stats()[0]
    st = node["store"]
    assert st["used_bytes"] == store["used_bytes"] and st["capacity_bytes"] == 600 * MB
    assert st["primary_bytes"] >= 50_000_000 and st["secondary_bytes"] == 0
    assert st["spilled_bytes"] == store["spilled_bytes"] and st["restored_bytes"] == store["restored_bytes"]
    # totals: heaps + the store once, however many processes map its pages
    heaps = stats["gcs"]["process"]["heap"] + sum(f["heap"] for r, f in procs if r != "gcs")
    assert stats["totals"]["heap_bytes"] == heaps
    assert stats["totals"]["total_bytes"] == heaps + st["used_bytes"]
    assert node["totals"]["store_mapped_bytes"] >= 2 * 50_000_000  # driver and holder: not added
    assert "counted once" in stats["totals"]["note"]
    skate.kill(holder)


@pytest.mark.timeout(120)
def test_a_worker_reading_a_large_object_shows_it_as_shared_not_heap(mem_cluster):
    holder = Holder.remote()
    pid = skate.get(holder.pid.remote(), timeout=60)
    before = process(state.get_memory_stats(), pid)
    ref = skate.put(np.ones(BIG))
    assert skate.get(holder.read.remote([ref]), timeout=60) == BIG
    stats = state.get_memory_stats()
    after = process(stats, pid)
    assert after["role"] == "actor" and after["name"] == "Holder"
    assert after["store_mapped"] - before["store_mapped"] >= 190 * MB, (before, after)
    assert after["shared"] - before["shared"] >= 190 * MB, (before, after)
    assert after["heap"] - before["heap"] < 30 * MB, (before, after)
    assert stats["nodes"][0]["store"]["reading_bytes"] >= 200_000_000  # the holder's view pins it
    skate.kill(holder)
    del ref


@pytest.mark.timeout(120)
def test_a_worker_building_a_large_list_shows_it_as_heap(mem_cluster):
    holder = Holder.remote()
    pid = skate.get(holder.pid.remote(), timeout=60)
    before = process(state.get_memory_stats(), pid)
    assert skate.get(holder.build_list.remote(BIG // 5), timeout=60) == BIG // 5  # ~150 MB of objects
    after = process(state.get_memory_stats(), pid)
    assert after["heap"] - before["heap"] >= 120 * MB, (before, after)
    assert after["store_mapped"] - before["store_mapped"] < 5 * MB, (before, after)
    info = psutil.Process(pid).memory_info()
    assert abs(after["heap"] - (info.rss - info.shared)) <= tolerance(info.rss - info.shared)
    skate.kill(holder)


@pytest.mark.timeout(120)
def test_gcs_tables_grow_with_named_actors(mem_cluster):
    before = state.get_memory_stats()["gcs"]["tables"]
    actors = [Holder.options(name=f"memacct-{i}").remote() for i in range(3)]
    skate.get([a.pid.remote() for a in actors], timeout=60)
    after = state.get_memory_stats()["gcs"]["tables"]
    assert after["actors"]["count"] == before["actors"]["count"] + 3
    assert after["actors"]["bytes"] > before["actors"]["bytes"] + 3 * len("memacct-0")
    for name in ("nodes", "jobs", "placement_groups", "kv"):
        assert after[name]["count"] >= 0 and after[name]["bytes"] >= 0
    assert after["nodes"]["count"] == 1 and after["jobs"]["count"] >= 1
    for a in actors:
        skate.kill(a)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "skate.scripts.cli", "memory", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.timeout(120)
def test_cli_summary_and_stats_only(mem_cluster):
    ref = skate.put(np.ones(BIG // 10))
    full = run_cli("--units", "MB")
    assert full.returncode == 0, full.stderr
    summary, _, rows = full.stdout.partition("\n\n")
    assert summary.startswith("Memory summary") and "GCS tables: " in summary
    assert f"{os.getpid():>7} driver" in summary and "raylet" in summary and "zygote" in summary
    assert "Cluster total: heaps" in summary and "counted once" in summary
    assert "primary copies" in summary and "reads in progress" in summary and "spilled" in summary
    assert ref.hex() in rows and "20.00 MB" in rows
    for flag in ("--stats-only", "--stats"):
        only = run_cli(flag)
        assert only.returncode == 0, only.stderr
        assert "Memory summary" in only.stdout and "KV entries" in only.stdout
        assert ref.hex() not in only.stdout and "object id" not in only.stdout


@pytest.mark.timeout(120)
def test_cli_grouping_sorting_units_and_entries(mem_cluster):
    refs = [skate.put(np.ones(n)) for n in (300_000, 200_000, 100_000)]  # 2.4, 1.6, 0.8 MB
    by_stack = run_cli("--group-by", "STACK_TRACE", "--units", "KB")
    assert by_stack.returncode == 0, by_stack.stderr
    assert "--- call site " in by_stack.stdout and "test_memory_stats.py" in by_stack.stdout
    assert "2,400." in by_stack.stdout and " KB " in by_stack.stdout
    by_node = run_cli("--sort-by", "OBJECT_SIZE", "--units", "B")
    lines = by_node.stdout.splitlines()
    order = [next(i for i, line in enumerate(lines) if r.hex() in line) for r in refs]
    assert order == sorted(order), order  # largest first
    assert "--- node " in by_node.stdout
    one = run_cli("--num-entries", "1", "--sort-by", "PID")
    assert one.returncode == 0, one.stderr
    assert "more (--num-entries)" in one.stdout
    assert sum(r.hex() in one.stdout for r in refs) <= 1
    by_kind = run_cli("--sort-by", "REFERENCE_TYPE")
    assert by_kind.returncode == 0 and all(r.hex() in by_kind.stdout for r in refs)


@pytest.mark.parametrize(
    "args, option",
    [
        (["--group-by", "HOST"], "--group-by"),
        (["--sort-by", "AGE"], "--sort-by"),
        (["--units", "TB"], "--units"),
        (["--num-entries", "-1"], "--num-entries"),
        (["--num-entries", "many"], "--num-entries"),
    ],
)
def test_cli_bad_option_values_are_usage_errors_naming_the_option(args, option):
    out = run_cli(*args)
    assert out.returncode == 2, out
    assert f"Invalid value for '{option}'" in out.stderr and "usage: skate memory" in out.stderr


def test_cli_memory_address_without_a_cluster():
    out = run_cli("--stats-only", "--address", "127.0.0.1:1")
    assert out.returncode == 1 and "no running Skate cluster" in out.stderr
