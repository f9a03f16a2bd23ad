"""The memory report's arithmetic (skate._memory_accounting): fake readings in, exact figures out."""

from __future__ import annotations

import pytest

from skate import _memory_accounting as acct

MB = 2**20


def reading(pid: int, rss: int, shared: int, store_mapped: int = 0) -> dict:
    return {"pid": pid, "rss": rss, "shared": shared, "store_mapped": store_mapped}


def obj(size, in_memory=True, sealed=True, secondary=False, freed=False, readers=0) -> dict:
    return {
        "size": size,
        "in_memory": in_memory,
        "sealed": sealed,
        "secondary": secondary,
        "freed": freed,
        "readers": readers,
    }


STORE_TOTALS = {
    "used_bytes": 400 * MB,
    "capacity_bytes": 1000 * MB,
    "spilled_bytes": 50 * MB,
    "restored_bytes": 20 * MB,
    "spill_disk_bytes": 30 * MB,
}


def test_heap_is_rss_minus_shared_and_store_pages_are_shared_only():
    # a reader that faulted in a 200 MB object: its rss grows, its heap does not
    fig = acct.process_figures(
        reading(7, rss=260 * MB, shared=230 * MB, store_mapped=200 * MB), "worker", "f"
    )
    assert fig == {
        "pid": 7,
        "role": "worker",
        "name": "f",
        "rss": 260 * MB,
        "shared": 230 * MB,
        "heap": 30 * MB,
        "store_mapped": 200 * MB,
    }


def test_inconsistent_readings_are_clamped():
    # readings taken a moment apart may disagree: heap is never negative, mapped never beyond shared
    fig = acct.process_figures(reading(1, rss=10, shared=12, store_mapped=20), "raylet")
    assert (fig["shared"], fig["heap"], fig["store_mapped"]) == (10, 0, 10)


def test_store_breakdown_puts_each_object_in_one_kind():
    objects = [
        obj(100),  # primary
        obj(40, readers=2),  # primary, being read
        obj(30, secondary=True),  # pulled copy
        obj(20, secondary=True, readers=1),
        obj(10, sealed=False),  # being created
        obj(5, freed=True, readers=1),  # freed, a reader still holds it
        obj(70, in_memory=False),  # spilled only
        obj(9, in_memory=False, freed=True),  # freed and not in memory: not counted
    ]
    out = acct.store_breakdown(objects, STORE_TOTALS)
    assert out["primary_bytes"] == 140
    assert out["secondary_bytes"] == 50
    assert out["being_created_bytes"] == 10
    assert out["freed_held_by_reads_bytes"] == 5
    assert out["reading_bytes"] == 65
    assert (out["num_in_memory"], out["num_only_on_disk"]) == (6, 1)
    assert out["used_bytes"] == 400 * MB and out["spilled_bytes"] == 50 * MB
    assert out["restored_bytes"] == 20 * MB and out["spill_disk_bytes"] == 30 * MB
    in_memory = sum(out[k] for k in ("primary_bytes", "secondary_bytes", "being_created_bytes"))
    assert in_memory + out["freed_held_by_reads_bytes"] == 100 + 40 + 30 + 20 + 10 + 5


def _node(node_id="n1"):
    raylet = acct.process_figures(reading(10, 50 * MB, 20 * MB, 1 * MB), "raylet")
    procs = [
        acct.process_figures(reading(12, 300 * MB, 220 * MB, 200 * MB), "worker", "reader"),
        acct.process_figures(reading(11, 400 * MB, 10 * MB), "actor", "Hoarder"),
        acct.process_figures(reading(13, 240 * MB, 210 * MB, 200 * MB), "driver"),
    ]
    store = acct.store_breakdown([obj(200 * MB, readers=2)], dict(STORE_TOTALS, used_bytes=200 * MB))
    return acct.node_report(node_id, raylet, procs, store)


def test_node_totals_count_shared_store_pages_once():
    node = _node()
    t = node["totals"]
    # heaps: raylet 30, reader 80, Hoarder 390, driver 30 -> 530 MB; the 200 MB object mapped by
    # two processes appears once, as the store's used bytes
    assert t["heap_bytes"] == 530 * MB
    assert t["store_used_bytes"] == 200 * MB
    assert t["total_bytes"] == 730 * MB
    assert t["store_mapped_bytes"] == 401 * MB  # shown, never added
    assert "counted once" in t["note"]
    assert [p["pid"] for p in node["processes"]] == [11, 13, 12]  # by role, then pid


def test_cluster_totals_add_the_gcs_and_every_node():
    gcs = {
        "process": acct.process_figures(reading(5, 60 * MB, 25 * MB), "gcs"),
        "tables": acct.table_figures({"actors": (3, 900), "kv": (10, 5000)}),
    }
    zygote = acct.process_figures(reading(20, 40 * MB, 15 * MB), "zygote")
    second = _node("n2")
    second["processes"].append(zygote)
    second["totals"]["heap_bytes"] += zygote["heap"]
    second["totals"]["total_bytes"] += zygote["heap"]
    report = acct.cluster_report(gcs, [_node("n1"), second])
    t = report["totals"]
    assert t["heap_bytes"] == 35 * MB + 530 * MB + 555 * MB
    assert t["system_heap_bytes"] == 35 * MB + 30 * MB + 30 * MB + 25 * MB
    assert t["application_heap_bytes"] == 2 * 500 * MB
    assert t["system_heap_bytes"] + t["application_heap_bytes"] == t["heap_bytes"]
    assert t["store_used_bytes"] == 400 * MB and t["store_capacity_bytes"] == 2000 * MB
    assert t["total_bytes"] == t["heap_bytes"] + 400 * MB
    assert report["gcs"]["tables"] == {
        "actors": {"count": 3, "bytes": 900},
        "kv": {"count": 10, "bytes": 5000},
    }


def test_cluster_report_without_the_gcs():
    report = acct.cluster_report(None, [_node()])
    assert report["totals"]["heap_bytes"] == 530 * MB


@pytest.mark.parametrize(
    "n, units, text",
    [
        (1234, "B", "1234 B"),
        (1500, "KB", "1.50 KB"),
        (2_500_000, "MB", "2.50 MB"),
        (3 * 10**9, "GB", "3.00 GB"),
    ],
)
def test_units_are_rays_decimal_multiples(n, units, text):
    assert acct.in_units(n, units) == text


def test_unknown_units_name_the_choices():
    with pytest.raises(ValueError, match="B, KB, MB, GB"):
        acct.in_units(1, "TB")
    assert acct.in_units(None, "MB") == "?"


def test_gauges_cover_processes_store_and_tables():
    gcs = {
        "process": acct.process_figures(reading(5, 60 * MB, 25 * MB), "gcs"),
        "tables": acct.table_figures({"actors": (3, 900)}),
    }
    found = {
        (name, tuple(sorted(labels.items()))): value
        for name, _, labels, value in acct.gauges(acct.cluster_report(gcs, [_node()]))
    }
    assert found[("skate_gcs_heap_bytes", ())] == 35 * MB
    assert found[("skate_gcs_table_entries", (("Table", "actors"),))] == 3
    assert (
        found[("skate_process_heap_bytes", (("NodeId", "n1"), ("Pid", "11"), ("Role", "actor")))] == 390 * MB
    )
    assert found[("skate_object_store_reading_bytes", (("NodeId", "n1"),))] == 200 * MB
