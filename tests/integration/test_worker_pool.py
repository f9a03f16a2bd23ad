"""The worker pool while it grows: fresh workers must take tasks, and leases must come back."""

from __future__ import annotations

import time

from tests.integration._helpers import wait_for


def test_tasks_on_freshly_started_workers_never_fail(fresh):
    # Right after init (and whenever the pool grows) workers are still starting. A task pushed
    # to a worker that the raylet reports as ready must run: with max_retries=0 any spurious
    # failure shows up as an error, and every CPU must be available again afterwards.
    skate = fresh
    for round_ in range(4):
        skate.init(num_cpus=4)
        try:

            @skate.remote(max_retries=0, num_cpus=0.25)
            def quick(i):
                return i

            refs = [quick.remote(i) for i in range(40)]
            assert skate.get(refs, timeout=30) == list(range(40)), f"round {round_}"

            def all_free():
                return skate.available_resources().get("CPU") == 4

            assert wait_for(all_free, timeout=5), f"round {round_}: {skate.available_resources()}"
        finally:
            skate.shutdown()


def test_pool_grows_and_shrinks_back(fresh):
    skate = fresh
    skate.init(num_cpus=2)
    try:

        @skate.remote(num_cpus=0.25)
        def hold(seconds):
            import os

            time.sleep(seconds)
            return os.getpid()

        pids = set(skate.get([hold.remote(1.0) for _ in range(8)], timeout=30))
        assert len(pids) == 8  # 8 tasks at 0.25 CPU on 2 CPUs run at once, each in its own worker

        def back_to_full():
            return skate.available_resources().get("CPU") == 2

        assert wait_for(back_to_full, timeout=5), skate.available_resources()
        # and the pool still serves
        assert len(skate.get([hold.remote(0) for _ in range(4)], timeout=30)) == 4
    finally:
        skate.shutdown()
