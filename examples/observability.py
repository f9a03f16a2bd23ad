"""See what a cluster does: tasks and actors through the state API, memory, a timeline.

Run with: python examples/observability.py
Then, against a `skate start --head` cluster, the same from the shell:
    skate list tasks --filter state=FAILED
    skate summary tasks
    skate memory --stats-only
    skate logs
"""

import time

import skate as ray
from skate.util import state


@ray.remote
def work(x):
    return x * 2


@ray.remote
def broken():
    raise ValueError("a failure the state API shows")


@ray.remote(enable_task_events=False)
def unseen(x):  # a hot path whose calls the state API need not show
    return x


@ray.remote
class Keeper:
    def ping(self):
        return "pong"


def main() -> None:
    ray.init(num_cpus=2)
    ray.get([work.remote(i) for i in range(10)])
    try:
        ray.get(broken.remote())
    except ValueError:
        pass
    ray.get([unseen.remote(i) for i in range(100)])  # recorded nowhere
    keeper = Keeper.remote()
    ray.get(keeper.ping.remote())
    time.sleep(1.5)  # task events reach the GCS once a second
    for row in state.list_tasks(filters=[("state", "=", "FAILED")], detail=True):
        print("failed:", row["name"], row["error_type"], row["error_message"])
    assert not state.list_tasks(filters=[("name", "=", "unseen")])
    print("tasks by function:", {k: v["state_counts"] for k, v in state.summarize_tasks()["summary"].items()})
    print("actors:", [(a["class_name"], a["state"]) for a in state.list_actors()])
    totals = state.get_memory_stats()["totals"]
    heap_mib = totals["heap_bytes"] / 2**20
    print(f"memory: {heap_mib:.0f} MiB of heaps, {totals['store_used_bytes']} B in the store")
    ray.timeline("timeline.json")
    print("timeline written to timeline.json (open it in chrome://tracing or Perfetto)")
    ray.shutdown()


if __name__ == "__main__":
    main()
