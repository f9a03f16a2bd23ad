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


def _finished_by(state, pids: set, count: int):
    """The FINISHED task rows run by processes in `pids`, once there are `count` of them."""
    rows = [r for r in state.list_tasks(limit=10_000) if r["worker_pid"] in pids and r["state"] == "FINISHED"]
    return rows if len(rows) >= count else None


def test_workers_the_pool_stops_send_their_task_events_first(fresh):
    """An idle worker the pool trims, or one that leaves after max_calls, is stopped only
    after its last task events reached the GCS: with events sent once a minute, the rows of
    the calls those workers ran arrive within seconds, not never."""
    import psutil

    from skate.util import state

    skate = fresh
    skate.init(num_cpus=1, _system_config={"task_events_report_interval_ms": 60_000})
    try:

        @skate.remote(num_cpus=0.25)
        def hold(seconds):
            import os

            time.sleep(seconds)
            return os.getpid()

        pids = skate.get([hold.remote(1.0) for _ in range(4)], timeout=30)
        assert len(set(pids)) == 4  # each in its own worker; then the pool trims to one

        def trimmed():
            gone = {p for p in pids if not psutil.pid_exists(p)}
            return gone if len(gone) >= 3 else None  # (the one kept may be another worker)

        gone = wait_for(trimmed, timeout=15)
        assert gone, [psutil.pid_exists(p) for p in pids]
        assert wait_for(lambda: _finished_by(state, gone, len(gone)), timeout=10), state.list_tasks(limit=100)

        @skate.remote(max_calls=1)
        def once():
            import os

            return os.getpid()

        left = set(skate.get([once.remote() for _ in range(2)], timeout=30))
        assert len(left) == 2  # a new worker each time
        assert wait_for(lambda: _finished_by(state, left, 2), timeout=10), state.list_tasks(limit=100)
    finally:
        skate.shutdown()
