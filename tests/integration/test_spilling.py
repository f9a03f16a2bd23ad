"""Spilling: more data than the store holds, values intact, files gone afterwards."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest

from tests.integration._helpers import wait_for

MB = 1024 * 1024


def _spill_files(skate) -> list[str]:
    return glob.glob(os.path.join(skate._api._node.session_dir, "spill-*", "*.bin"))


def test_three_times_capacity_round_trips_intact(fresh):
    skate = fresh
    skate.init(num_cpus=2, object_store_memory=100 * MB)
    refs = [skate.put(np.full(2_500_000, i, dtype=np.int64)) for i in range(15)]  # 300 MB through 100 MB
    assert _spill_files(skate), "nothing was spilled"
    for i, ref in enumerate(refs):
        arr = skate.get(ref, timeout=60)
        assert arr.shape == (2_500_000,) and int(arr[0]) == i and int(arr[-1]) == i
        del arr
    del refs, ref
    assert wait_for(lambda: not _spill_files(skate)), _spill_files(skate)
    from skate.util import state

    assert wait_for(lambda: state.object_store_stats()[0]["num_objects"] == 0)
    assert state.object_store_stats()[0]["used_bytes"] == 0
    assert not [r for r in state.list_objects() if r["process"] == "driver"]


def test_task_returns_spill_and_restore(fresh):
    skate = fresh
    skate.init(num_cpus=2, object_store_memory=100 * MB)

    @skate.remote
    def block(i):
        return np.full(2_500_000, i, dtype=np.int64)  # 20 MB

    refs = [block.remote(i) for i in range(15)]
    assert [int(skate.get(r, timeout=60)[7]) for r in refs] == list(range(15))


def test_spilled_object_as_task_argument(fresh):
    skate = fresh
    skate.init(num_cpus=2, object_store_memory=100 * MB)
    first = skate.put(np.full(2_500_000, 7, dtype=np.int64))
    _others = [skate.put(np.zeros(2_500_000, dtype=np.int64)) for _ in range(8)]  # pushes `first` out

    @skate.remote
    def head(a):
        return int(a[0])

    assert skate.get(head.remote(first), timeout=60) == 7


def test_disk_limit_raises_object_store_full(fresh):
    skate = fresh
    skate.init(
        num_cpus=1,
        object_store_memory=100 * MB,
        _system_config={"object_spilling_limit_bytes": 100 * MB},
    )
    refs = []
    with pytest.raises(skate.exceptions.ObjectStoreFullError) as info:
        for _ in range(20):
            refs.append(skate.put(np.zeros(2_500_000, dtype=np.int64)))
    assert "spill limit" in str(info.value)
    assert int(skate.get(refs[-1], timeout=60)[0]) == 0  # what was stored is intact


def test_pinned_objects_are_not_spilled(fresh):
    skate = fresh
    skate.init(num_cpus=1, object_store_memory=100 * MB)
    held = [skate.get(skate.put(np.full(2_500_000, i, dtype=np.int64))) for i in range(4)]  # 80 MB in use
    with pytest.raises(skate.exceptions.ObjectStoreFullError) as info:
        skate.put(np.zeros(5_000_000, dtype=np.int64))  # 40 MB more: nothing may move
    assert "in use" in str(info.value)
    assert [int(a[0]) for a in held] == [0, 1, 2, 3]


def test_custom_spill_directory_is_used_and_emptied(fresh, tmp_path):
    skate = fresh
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    skate.init(
        num_cpus=1,
        object_store_memory=100 * MB,
        _system_config={
            "object_spilling_config": json.dumps(
                {"type": "filesystem", "params": {"directory_path": str(spill_dir)}}
            )
        },
    )
    refs = [skate.put(np.full(2_500_000, i, dtype=np.int64)) for i in range(8)]
    assert list(spill_dir.iterdir())
    assert int(skate.get(refs[0], timeout=60)[5]) == 0
    del refs
    # Files go with their objects; the raylet's own subdirectory goes when it stops.
    assert wait_for(lambda: not list(spill_dir.rglob("*.bin")))
    skate.shutdown()
    assert wait_for(lambda: not list(spill_dir.iterdir()))


def test_bad_spill_config_is_rejected(fresh):
    skate = fresh
    with pytest.raises(ValueError):
        skate.init(num_cpus=1, _system_config={"object_spilling_limit_bytes": -1})
    with pytest.raises(ValueError):
        skate.init(num_cpus=1, _system_config={"no_such_key": 1})
    assert not skate.is_initialized()
