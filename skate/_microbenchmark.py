"""`skate microbenchmark`: Ray's microbenchmark metrics, names and definitions.

Each line reads `NAME per second MEAN +- SD`, as `ray microbenchmark` prints it, so the two
can be compared side by side. "actor creation rate" and the "streaming generator items" lines
are Skate's own (Ray has none).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import skate


def timeit(
    name: str,
    fn: Callable[[], object],
    multiplier: float = 1,
    *,
    seconds: float = 1.0,
    rounds: int = 3,
    pattern: str = "",
    results: list | None = None,
) -> None:
    if pattern and pattern not in name:
        return
    start = time.perf_counter()
    count = 0
    while time.perf_counter() - start < min(0.5, seconds):  # warm up and size the step
        fn()
        count += 1
    step = count // 10 + 1
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        count = 0
        while time.perf_counter() - start < seconds:
            for _ in range(step):
                fn()
            count += step
        rates.append(multiplier * count / (time.perf_counter() - start))
    _report(name, rates, results)


def _report(name: str, rates: list[float], results: list | None) -> None:
    """One line as `ray microbenchmark` prints it: NAME per second MEAN +- SD."""
    mean = statistics.mean(rates)
    sd = statistics.stdev(rates) if len(rates) > 1 else 0.0
    print(f"{name} per second {round(mean, 2)} +- {round(sd, 2)}", flush=True)
    if results is not None:
        results.append((name, mean, sd))


@skate.remote
def small_value():
    return b"ok"


@skate.remote(num_cpus=0)
def do_put_small():
    for _ in range(100):
        skate.put(0)


@skate.remote(num_cpus=0)
def do_put():
    import numpy as np

    for _ in range(10):
        skate.put(np.zeros(10 * 1024 * 1024, dtype=np.int64))


@skate.remote
def create_object_containing_ref():
    return [skate.put(i) for i in range(10000)]


@skate.remote
def stream_small_items(n):
    for _ in range(n):
        yield b"ok"


@skate.remote
def stream_mib_items(n):
    import numpy as np

    block = np.zeros(1024 * 1024, dtype=np.uint8)
    for _ in range(n):
        yield block


def _generator_metrics(kw: dict) -> None:
    """Skate's lines (Ray has none): items of a streaming generator task taken by the driver
    as they come, each one's value read, small items and 1 MiB ones (in shared memory)."""

    def consume(fn: Any, n: int) -> None:
        for ref in fn.remote(n):
            skate.get(ref)

    timeit("streaming generator items (small items)", lambda: consume(stream_small_items, 1000), 1000, **kw)
    timeit("streaming generator items (1 MiB items)", lambda: consume(stream_mib_items, 100), 100, **kw)


# Actor classes are made remote by a call, not a decorator: type checkers keep a decorated
# class's own type, which has no .remote().
class _Actor:
    def small_value(self):
        return b"ok"

    def small_value_arg(self, x):
        return b"ok"

    def small_value_batch(self, n):
        return len(skate.get([small_value.remote() for _ in range(n)]))


Actor: Any = skate.remote(_Actor)
# Not importable by name: cloudpickle sends these classes by value, as it does a user's script's
# classes, instead of making every new worker import this module (as Ray's benchmark does too).
del _Actor


class _AsyncActor:
    async def small_value(self):
        return b"ok"

    async def small_value_with_arg(self, x):
        return b"ok"


AsyncActor: Any = skate.remote(_AsyncActor)
del _AsyncActor


class _Client:
    def __init__(self, servers):
        self.servers = servers if isinstance(servers, list) else [servers]

    def small_value_batch(self, n):
        refs: list[Any] = []
        for s in self.servers:
            refs.extend(s.small_value.remote() for _ in range(n))
        return len(skate.get(refs))

    def small_value_batch_arg(self, n):
        x = skate.put(0)
        refs: list[Any] = []
        for s in self.servers:
            refs.extend(s.small_value_arg.remote(x) for _ in range(n))
        return len(skate.get(refs))


Client: Any = skate.remote(num_cpus=0)(_Client)
del _Client


def _actor_metrics(kw: dict) -> None:
    import multiprocessing

    pattern = kw.get("pattern")
    if pattern and "actor" not in pattern:
        return
    n_cpu = max(1, multiprocessing.cpu_count() // 2)
    a = Actor.remote()
    timeit("1:1 actor calls sync", lambda: skate.get(a.small_value.remote()), **kw)
    timeit(
        "1:1 actor calls async", lambda: skate.get([a.small_value.remote() for _ in range(1000)]), 1000, **kw
    )
    c = Actor.options(max_concurrency=16).remote()
    timeit(
        "1:1 actor calls concurrent",
        lambda: skate.get([c.small_value.remote() for _ in range(1000)]),
        1000,
        **kw,
    )
    n = 5000
    actors = [Actor.remote() for _ in range(n_cpu)]
    client = Client.remote(actors)
    timeit(
        "1:n actor calls async", lambda: skate.get(client.small_value_batch.remote(n)), n * len(actors), **kw
    )
    clients = [Client.remote(x) for x in actors]
    timeit(
        "n:n actor calls async",
        lambda: skate.get([cl.small_value_batch.remote(n) for cl in clients]),
        n * len(clients),
        **kw,
    )
    timeit(
        "n:n actor calls with arg async",
        lambda: skate.get([cl.small_value_batch_arg.remote(n) for cl in clients]),
        n * len(clients),
        **kw,
    )
    aa = AsyncActor.remote()
    timeit("1:1 async-actor calls sync", lambda: skate.get(aa.small_value.remote()), **kw)
    timeit(
        "1:1 async-actor calls async",
        lambda: skate.get([aa.small_value.remote() for _ in range(1000)]),
        1000,
        **kw,
    )
    timeit(
        "1:1 async-actor calls with args async",
        lambda: skate.get([aa.small_value_with_arg.remote(i) for i in range(1000)]),
        1000,
        **kw,
    )
    async_actors = [AsyncActor.remote() for _ in range(n_cpu)]
    aclient = Client.remote(async_actors)
    timeit(
        "1:n async-actor calls async",
        lambda: skate.get(aclient.small_value_batch.remote(n)),
        n * len(async_actors),
        **kw,
    )
    aclients = [Client.remote(x) for x in async_actors]
    timeit(
        "n:n async-actor calls async",
        lambda: skate.get([cl.small_value_batch.remote(n) for cl in aclients]),
        n * len(aclients),
        **kw,
    )

    def create_and_kill():
        fresh = [Actor.remote() for _ in range(4)]
        skate.get([x.small_value.remote() for x in fresh])
        for x in fresh:
            skate.kill(x)

    timeit("actor creation rate (create, call once, kill)", create_and_kill, 4, **kw)


def _put_gigabytes(np, kw: dict) -> None:
    arr = np.zeros(100 * 1024 * 1024, dtype=np.int64)
    timeit("single client put gigabytes", lambda: skate.put(arr), 8 * 0.1, **kw)


def _spill_metrics(pattern: str, rounds: int, results: list) -> None:
    """Spill and restore throughput next to raw disk write and read measured the same way:
    the same bytes, the same file system (the spill directory), no fsync."""
    import os
    import tempfile

    import numpy as np

    from skate.util import state

    names = ["spill gigabytes", "restore gigabytes", "raw disk write gigabytes", "raw disk read gigabytes"]
    if pattern and not any(pattern in n for n in names):
        return
    chunk, count = 64 * 2**20, 16  # 1 GiB through a 512 MiB store
    rates: dict[str, list[float]] = {n: [] for n in names}
    skate.init(num_cpus=1, object_store_memory=512 * 2**20)
    try:
        spill_dir = state.object_store_stats()[0]["spill_dir"]
        data = np.ones(chunk // 8, dtype=np.int64)
        for _ in range(rounds):
            refs = [skate.put(data) for _ in range(count // 2)]  # fill the store (not timed)
            before = state.object_store_stats()[0]
            t0 = time.perf_counter()
            refs += [skate.put(data) for _ in range(count // 2)]  # each of these must spill
            t1 = time.perf_counter()
            mid = state.object_store_stats()[0]
            spilled = refs[: count // 2]
            del refs  # keep only spilled objects, so restoring them needs no further writes
            t2 = time.perf_counter()
            for ref in spilled:
                skate.get(ref)
            t3 = time.perf_counter()
            after = state.object_store_stats()[0]
            spilled_bytes = mid["spilled_bytes"] - before["spilled_bytes"]
            restored_bytes = after["restored_bytes"] - mid["restored_bytes"]
            rates["spill gigabytes"].append(spilled_bytes / (t1 - t0) / 1e9)
            rates["restore gigabytes"].append(restored_bytes / (t3 - t2) / 1e9)
            del spilled
            fd, path = tempfile.mkstemp(dir=spill_dir, suffix=".raw")
            view = data.data.cast("B")
            t0 = time.perf_counter()
            with os.fdopen(fd, "wb") as f:
                for _ in range(count // 2):
                    f.write(view)
            t1 = time.perf_counter()
            buf = bytearray(chunk)
            with open(path, "rb") as f:
                while f.readinto(buf):
                    pass
            t2 = time.perf_counter()
            os.unlink(path)
            rates["raw disk write gigabytes"].append(chunk * (count // 2) / (t1 - t0) / 1e9)
            rates["raw disk read gigabytes"].append(chunk * (count // 2) / (t2 - t1) / 1e9)
    finally:
        skate.shutdown()
    for name in names:
        _report(name, rates[name], results)


def _tiny_wheel(directory: str, name: str) -> str:
    """A minimal pure-Python wheel written by hand: pip installs it by path, no network."""
    import base64
    import hashlib
    import os
    import zipfile

    dist = f"{name}-0.1.dist-info"
    files = {
        f"{name}/__init__.py": "VALUE = 1\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    out = os.path.join(directory, f"{name}-0.1-py3-none-any.whl")
    with zipfile.ZipFile(out, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return out


@skate.remote
def _import_value(module: str):
    import importlib

    return importlib.import_module(module).VALUE


def _runtime_env_metrics(kw: dict) -> None:
    """Tasks in runtime envs: a new env_vars env per task (a worker started for each), the same
    one again (warm), and a pip env from a local wheel, cold (installed then) and warm."""
    import itertools
    import tempfile

    pattern = kw["pattern"]
    names = [
        "task in a new env_vars env (first)",
        "task in an env_vars env (warm)",
        "task in a pip env (local wheel), cold",
        "task in a pip env (local wheel), warm",
    ]
    if pattern and not any(pattern in n for n in names):
        return
    counter = itertools.count()

    def new_env() -> None:
        skate.get(small_value.options(runtime_env={"env_vars": {"SKATE_BENCH": str(next(counter))}}).remote())

    # The warm lines first: "a new env per task" leaves dozens of idle env workers behind, and
    # their reaping (after SKATE_RUNTIME_ENV_WORKER_IDLE_S) would run through a warm line.
    warm = small_value.options(runtime_env={"env_vars": {"SKATE_BENCH": "warm"}})
    timeit(names[1], lambda: skate.get(warm.remote()), **kw)
    if not pattern or any(pattern in n for n in names[2:]):
        with tempfile.TemporaryDirectory() as tmp:
            tag = f"{time.time_ns():x}"
            rates = []
            for i in range(kw["rounds"]):
                module = f"skate_bench_{tag}_{i}"
                env = {"pip": {"packages": [_tiny_wheel(tmp, module)], "pip_install_options": ["--no-index"]}}
                t0 = time.perf_counter()
                skate.get(_import_value.options(runtime_env=env).remote(module))
                rates.append(1 / (time.perf_counter() - t0))
            if not pattern or pattern in names[2]:
                _report(names[2], rates, kw["results"])
            warm_pip = _import_value.options(runtime_env=env)
            timeit(names[3], lambda: skate.get(warm_pip.remote(module)), **kw)
    timeit(names[0], new_env, **kw)


def _placement_group_metrics(kw: dict, num_cpus: int | None) -> None:
    """Ray's line: 100 one-bundle groups created, waited for, then removed, per round; on a
    fresh cluster with 100 units of a custom resource, as Ray runs it."""
    name = "placement group create/removal"
    if kw["pattern"] and kw["pattern"] not in name:
        return
    from skate.util.placement_group import placement_group, remove_placement_group

    num_pgs = 100

    def create_remove() -> None:
        pgs = [placement_group([{"custom": 0.001}]) for _ in range(num_pgs)]
        for pg in pgs:
            pg.wait(timeout_seconds=30)
        for pg in pgs:
            remove_placement_group(pg)

    skate.init(num_cpus=num_cpus, resources={"custom": 100})
    try:
        timeit(name, create_remove, num_pgs, **kw)
    finally:
        skate.shutdown()


def _raw_tcp_rate(nbytes: int, rounds: int) -> list[float]:
    """Loopback TCP from one process to another thread, sent from and received into memory
    buffers: what the object transfer between two nodes is measured against."""
    import socket
    import threading

    payload = memoryview(bytearray(b"x" * nbytes))
    sink = memoryview(bytearray(nbytes))
    rates = []
    for _ in range(rounds):
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def send(server: socket.socket = server) -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(payload)

        sender = threading.Thread(target=send)
        sender.start()
        t0 = time.perf_counter()
        with socket.create_connection(server.getsockname()) as sock:
            pos = 0
            while pos < nbytes:
                n = sock.recv_into(sink[pos:], min(nbytes - pos, 64 * 2**20))
                if not n:
                    break
                pos += n
        rates.append(nbytes / (time.perf_counter() - t0) / 1e9)
        sender.join()
        server.close()
    return rates


def _transfer_metrics(pattern: str, rounds: int, results: list) -> None:
    """A 1 GiB object pulled by a second node on this machine (over TCP), next to raw TCP."""
    import os

    import numpy as np

    from skate.cluster_utils import Cluster

    names = ["object transfer between nodes gigabytes", "raw tcp loopback gigabytes"]
    if pattern and not any(pattern in n for n in names):
        return
    nbytes = 2**30
    os.environ["SKATE_NO_UNIX_SOCKETS"] = "1"  # the nodes talk TCP, as on two machines
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 3 * nbytes})
    rates: list[float] = []
    try:
        cluster.add_node(num_cpus=1, resources={"far": 1}, object_store_memory=3 * nbytes)
        skate.init(address=cluster.address)

        @skate.remote(resources={"far": 1})
        def pull(box):
            t0 = time.perf_counter()
            arr = skate.get(box[0])
            return arr.nbytes / (time.perf_counter() - t0) / 1e9

        data = np.ones(nbytes // 8, dtype=np.int64)
        for _ in range(rounds + 1):  # the first round also faults in the receiver's pages
            ref = skate.put(data)
            rates.append(skate.get(pull.remote([ref])))
            del ref
    finally:
        skate.shutdown()
        cluster.shutdown()
        os.environ.pop("SKATE_NO_UNIX_SOCKETS", None)
    measured = {names[0]: rates[1:], names[1]: _raw_tcp_rate(nbytes, rounds)}
    for name in names:
        _report(name, measured[name], results)


JOB_METRIC = "job submit to first log line seconds"


def _job_metrics(pattern: str, rounds: int, results: list) -> None:
    """Seconds from `submit_job` to the job's first log line, on a private cluster with its
    dashboard (the first submission, which also connects the dashboard to the cluster, is a
    warm-up and not counted). Compare with Ray's `ray job submit` on the same machine."""
    import sys

    from skate.job_submission import JobSubmissionClient

    if pattern and pattern not in JOB_METRIC:
        return
    ctx = skate.init(num_cpus=1, include_dashboard=True)
    times: list[float] = []
    try:
        client = JobSubmissionClient(f"http://{ctx.dashboard_url}")
        for i in range(rounds + 1):
            t0 = time.perf_counter()
            job_id = client.submit_job(entrypoint=f"{sys.executable} -c \"print('first line')\"")
            while "first line" not in client.get_job_logs(job_id):
                if time.perf_counter() - t0 > 60:
                    raise TimeoutError(f"job {job_id} printed nothing in 60 s")
                time.sleep(0.005)
            if i:
                times.append(time.perf_counter() - t0)
    finally:
        skate.shutdown()
    mean = statistics.mean(times)
    sd = statistics.stdev(times) if len(times) > 1 else 0.0
    print(f"{JOB_METRIC} {mean:.3f} +- {sd:.3f}", flush=True)
    results.append((JOB_METRIC, mean, sd))


def run(pattern: str = "", seconds: float = 1.0, rounds: int = 3, num_cpus: int | None = None) -> list:
    """Start a local cluster, print every metric matching `pattern`, return (name, mean, sd)."""
    import numpy as np

    results: list = []
    kw: dict[str, Any] = dict(seconds=seconds, rounds=rounds, pattern=pattern, results=results)
    t0 = time.perf_counter()
    skate.init(num_cpus=num_cpus)
    skate.get(small_value.remote())
    init_seconds = time.perf_counter() - t0
    if not pattern or pattern in "init to first task result":
        print(f"init to first task result seconds {init_seconds:.3f}", flush=True)
    try:
        value = skate.put(0)
        timeit("single client get calls (Plasma Store)", lambda: skate.get(value), **kw)
        timeit("single client put calls (Plasma Store)", lambda: skate.put(0), **kw)
        timeit(
            "multi client put calls (Plasma Store)",
            lambda: skate.get([do_put_small.remote() for _ in range(10)]),
            1000,
            **kw,
        )
        _put_gigabytes(np, kw)
        timeit(
            "single client tasks and get batch",
            lambda: skate.get([small_value.remote() for _ in range(1000)]),
            **kw,
        )
        timeit(
            "multi client put gigabytes",
            lambda: skate.get([do_put.remote() for _ in range(10)]),
            10 * 8 * 0.1,
            **kw,
        )
        if not pattern or pattern in "single client get object containing 10k refs":
            obj_containing_ref = create_object_containing_ref.remote()
            skate.get(obj_containing_ref)
            timeit(
                "single client get object containing 10k refs", lambda: skate.get(obj_containing_ref), **kw
            )

        def wait_multiple_refs():
            not_ready = [small_value.remote() for _ in range(1000)]
            for _ in range(1000):
                _, not_ready = skate.wait(not_ready)

        timeit("single client wait 1k refs", wait_multiple_refs, **kw)
        timeit("single client tasks sync", lambda: skate.get(small_value.remote()), **kw)
        timeit(
            "single client tasks async",
            lambda: skate.get([small_value.remote() for _ in range(1000)]),
            1000,
            **kw,
        )
        n, m = 10000, 4
        task_clients = [Actor.remote() for _ in range(m)]
        timeit(
            "multi client tasks async",
            lambda: skate.get([a.small_value_batch.remote(n) for a in task_clients]),
            n * m,
            **kw,
        )
        _actor_metrics(kw)
        _generator_metrics(kw)
        _runtime_env_metrics(kw)
    finally:
        skate.shutdown()
    _placement_group_metrics(kw, num_cpus)
    _spill_metrics(pattern, rounds, results)
    _transfer_metrics(pattern, rounds, results)
    _job_metrics(pattern, rounds, results)
    return results


class _NamedClass:
    def ping(self) -> int:
        return 1


_Named: Any = skate.remote(num_cpus=0)(_NamedClass)


def gcs_storage_metrics(
    storages: tuple[str, ...] = ("memory", "sqlite"), seconds: float = 1.0, rounds: int = 3
) -> list:
    """Actor creation and named-actor lookups with each GCS storage (memory, sqlite, or a
    redis://HOST:PORT URL), side by side: what durability costs. Each storage gets its own
    one-node cluster (`cluster_utils.Cluster`); returns (name, mean, sd) rows."""
    from skate.cluster_utils import Cluster

    results: list = []
    kw: dict[str, Any] = dict(seconds=seconds, rounds=rounds, results=results)
    for storage in storages:
        label = storage.split("://")[0] if "://" in storage else storage
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "storage": storage})
        try:
            skate.init(address=cluster.address, namespace="gcs-storage-bench")

            def create_actor() -> None:
                actor = _Named.remote()
                skate.get(actor.ping.remote())
                skate.kill(actor)

            timeit(f"actor creation with {label} storage", create_actor, **kw)
            keeper = _Named.options(name="bench-named").remote()
            skate.get(keeper.ping.remote())
            timeit(f"named actor lookups with {label} storage", lambda: skate.get_actor("bench-named"), **kw)
        finally:
            skate.shutdown()
            cluster.shutdown()
    return results
