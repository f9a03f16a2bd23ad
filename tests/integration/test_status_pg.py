"""`skate status` shows placement-group usage: resources reserved by groups and how much of
them is used (as `ray status` does), and the groups by state."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import skate
from skate.scripts.report import format_groups, format_status, group_usage
from skate.util.placement_group import placement_group, remove_placement_group
from skate.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from tests.integration._helpers import wait_for

PG = "ab" * 9  # an 18-byte hex id


def test_group_usage_counts_group_wide_and_per_bundle_use():
    total = {
        "CPU": 4,
        f"CPU_group_{PG}": 2,
        f"CPU_group_0_{PG}": 1,
        f"CPU_group_1_{PG}": 1,
        f"bundle_group_{PG}": 2000,
        f"bundle_group_0_{PG}": 1000,
        "GPU": 1,
    }
    available = dict(total, CPU=2, **{f"CPU_group_0_{PG}": 0, f"CPU_group_{PG}": 0.5})
    available[f"bundle_group_0_{PG}"] = 999.999
    # bundle 0 fully used by a task placed in it (which also holds the group-wide name), 0.5
    # used by a task placed in "any bundle"
    assert group_usage(total, available) == {"CPU": (1.5, 2)}
    assert group_usage({"CPU": 4}, {"CPU": 4}) == {}


def test_format_status_exact_lines():
    nodes = [
        {
            "node_id": "n1" * 10,
            "alive": True,
            "node_ip": "127.0.0.1",
            "labels": {"ray.io/node-id": "n1" * 10, "zone": "a"},
            "resources": {"CPU": 4, f"CPU_group_{PG}": 2, f"CPU_group_0_{PG}": 2, f"bundle_group_{PG}": 1000},
            "available": {"CPU": 1, f"CPU_group_{PG}": 1, f"CPU_group_0_{PG}": 2, f"bundle_group_{PG}": 1000},
        },
        {
            "node_id": "n2" * 10,
            "alive": True,
            "node_ip": "127.0.0.1",
            "resources": {"CPU": 2},
            "available": {"CPU": 2},
        },
    ]
    groups = {
        PG: {
            "placement_group_id": PG,
            "name": "train",
            "state": "CREATED",
            "strategy": "PACK",
            "bundles": {0: {"CPU": 2.0}},
        },
        "cd" * 9: {
            "placement_group_id": "cd" * 9,
            "name": "",
            "state": "PENDING",
            "strategy": "SPREAD",
            "bundles": {},
        },
        "ef" * 9: {
            "placement_group_id": "ef" * 9,
            "name": "",
            "state": "REMOVED",
            "strategy": "PACK",
            "bundles": {},
        },
    }
    text = format_status(nodes, {}, groups)
    assert text.splitlines() == [
        "Nodes",
        f"  {'n1' * 6} (alive) at 127.0.0.1",
        "    labels: zone=a",
        "    CPU: 3 / 4 (1 used of 2 reserved in placement groups)",
        f"  {'n2' * 6} (alive) at 127.0.0.1",
        "    CPU: 0 / 2",
        "",
        "Resources",
        "  Usage:",
        "    3/6 CPU (1 used of 2 reserved in placement groups)",
        "",
        "Placement groups",
        "  1 CREATED, 1 PENDING, 1 REMOVED",
        f"  {PG[:12]} CREATED PACK 1 bundle(s) [{{'CPU': 2.0}}] name=train",
        f"  {'cd' * 6} PENDING SPREAD 0 bundle(s) []",
    ]
    assert format_groups({}) == ["  (no placement groups)"]
    assert (
        len(format_groups({str(i): dict(groups[PG], placement_group_id=str(i)) for i in range(25)}, limit=20))
        == 22
    )


@pytest.fixture
def fresh():
    if skate.is_initialized():
        skate.shutdown()
    yield skate
    if skate.is_initialized():
        skate.shutdown()


def _status() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "skate.scripts.cli", "status"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.timeout(120)
def test_cli_status_shows_placement_group_usage(fresh):
    skate.init(num_cpus=4)
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK", name="gang")
    assert pg.wait(30)
    pending = placement_group([{"CPU": 64}])  # never fits: stays PENDING
    gone = placement_group([{"CPU": 1}])
    assert gone.wait(30)
    remove_placement_group(gone)

    @skate.remote(num_cpus=1)
    class Holder:
        def ping(self):
            return 1

    holder = Holder.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()
    assert skate.get(holder.ping.remote(), timeout=60) == 1

    def shows_use():
        text = _status()
        return text if "(1 used of 2 reserved in placement groups)" in text else None

    text = wait_for(shows_use, timeout=15, interval=0.3)
    assert text, _status()
    assert "    CPU: 2 / 4 (1 used of 2 reserved in placement groups)" in text
    assert "    2/4 CPU (1 used of 2 reserved in placement groups)" in text
    assert "  1 CREATED, 1 PENDING, 1 REMOVED" in text
    assert re.search(rf"^  {pg.id.hex()[:12]} CREATED PACK 2 bundle\(s\) .* name=gang$", text, flags=re.M), (
        text
    )
    assert re.search(rf"^  {pending.id.hex()[:12]} PENDING PACK 1 bundle\(s\)", text, flags=re.M), text
    assert "_group_" not in text  # bundle resources are summed up, not listed one by one
    skate.kill(holder)
    remove_placement_group(pg)
    remove_placement_group(pending)

    def released():
        text = _status()
        return text if "reserved in placement groups" not in text else None

    text = wait_for(released, timeout=15, interval=0.3)
    assert text and "    CPU: 0 / 4" in text and "  3 REMOVED" in text, _status()
