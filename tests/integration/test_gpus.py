"""GPU ids: tasks and actors see CUDA_VISIBLE_DEVICES set to what they were given."""

from __future__ import annotations

import os
import time


def test_gpu_ids_are_assigned_and_exclusive(fresh):
    skate = fresh
    skate.init(num_cpus=4, num_gpus=2)
    assert skate.cluster_resources()["GPU"] == 2

    @skate.remote(num_gpus=1)
    def hold():
        time.sleep(0.5)
        return os.environ["CUDA_VISIBLE_DEVICES"], skate.get_gpu_ids()

    results = skate.get([hold.remote(), hold.remote()], timeout=60)
    assert sorted(r[1][0] for r in results) == [0, 1]
    assert all(r[0] == str(r[1][0]) for r in results)

    @skate.remote(num_gpus=0.5)
    def half():
        return skate.get_gpu_ids()

    assert len(skate.get(half.remote(), timeout=60)) == 1

    @skate.remote
    def no_gpu():
        return os.environ.get("CUDA_VISIBLE_DEVICES"), skate.get_gpu_ids()

    assert skate.get(no_gpu.remote(), timeout=60) == ("", [])

    @skate.remote(num_gpus=1)
    class Trainer:
        def ids(self):
            return skate.get_gpu_ids(), os.environ["CUDA_VISIBLE_DEVICES"]

    ids, visible = skate.get(Trainer.remote().ids.remote(), timeout=60)
    assert len(ids) == 1 and visible == str(ids[0])


def test_gpus_detected_from_cuda_visible_devices(fresh, monkeypatch):
    skate = fresh
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    skate.init(num_cpus=1)
    assert skate.cluster_resources().get("GPU") == 2


def test_three_gpus_asked_of_two_stay_pending(fresh):
    skate = fresh
    skate.init(num_cpus=2, num_gpus=2)

    @skate.remote(num_gpus=3)
    def too_many():
        return 1

    ready, _ = skate.wait([too_many.remote()], timeout=1)
    assert ready == []
