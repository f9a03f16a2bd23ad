"""The module-level API: init, shutdown, put, get, wait, cancel and cluster introspection."""

from __future__ import annotations

import atexit
import json
import logging
import numbers
import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import Any

import psutil

from skate import _gc_tuning, _ids
from skate._auto_init import current_or_init, not_initialized
from skate._config import OBJECT_STORE_MEMORY_FRACTION
from skate._labels import check_node_labels
from skate._node import LocalNode
from skate._options import check_namespace, check_resources
from skate._runtime_env import validate_runtime_env
from skate._system_config import apply_system_config
from skate.client.address import is_client_address
from skate.core_worker import context
from skate.core_worker.core import CoreWorker
from skate.object_ref import ObjectRef
from skate.object_ref_generator import ObjectRefGenerator
from skate.remote_function import RemoteFunction

_lock = threading.RLock()
_node: LocalNode | None = None


class SkateContext(dict):
    """What init() returns: the cluster's addresses; usable as a context manager."""

    def __init__(self, address_info: dict):
        super().__init__(address_info)
        self.address_info = address_info
        self.dashboard_url = address_info.get("webui_url")

    @property
    def address(self) -> str:
        """The cluster's address (the GCS's host:port)."""
        return self.address_info["address"]

    def disconnect(self) -> None:
        """Disconnect from the cluster, as shutdown() does."""
        shutdown()

    def __enter__(self) -> SkateContext:
        return self

    def __exit__(self, *exc: Any) -> None:
        shutdown()


RayContext = SkateContext


def _core() -> CoreWorker:
    """The current core worker, for calls that never start a cluster (as in Ray: nodes,
    cluster_resources, available_resources, ...)."""
    core = context.current
    if core is None:
        raise not_initialized()
    return core


def is_initialized() -> bool:
    """Whether this process is connected to a cluster (init() ran and shutdown() did not)."""
    return context.current is not None


def _check_count(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")


def _metrics_port(value: Any) -> int:
    """init(_metrics_export_port=...): the raylet's Prometheus port (None: any free port)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 65536:
        raise ValueError(f"_metrics_export_port must be a port number, got {value!r}")
    return value


def init(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    resources: dict[str, float] | None = None,
    object_store_memory: int | None = None,
    namespace: str | None = None,
    runtime_env: dict | None = None,
    ignore_reinit_error: bool = False,
    include_dashboard: bool | None = None,
    dashboard_host: str = "127.0.0.1",
    dashboard_port: int | None = None,
    log_to_driver: bool = True,
    logging_level: int = logging.INFO,
    _temp_dir: str | None = None,
    _system_config: dict | None = None,
    labels: dict[str, str] | None = None,
    **kwargs: Any,
) -> SkateContext:
    """Start a private local cluster (address=None) and connect this process as its driver.

    With address=None or "auto", SKATE_ADDRESS (or RAY_ADDRESS) names a cluster to join, as a
    submitted job's driver finds its cluster; an http(s) address there is a job server's, and
    is ignored here. A private cluster starts the dashboard only with include_dashboard=True.
    """
    global _node
    unknown = sorted(k for k in kwargs if not k.startswith("_"))
    if unknown:
        raise TypeError(f"init() got unexpected keyword argument(s) {unknown}")
    if isinstance(address, str) and is_client_address(
        address
    ):  # a remote driver through the head's client server
        return _connect_client(address, namespace, runtime_env, ignore_reinit_error, kwargs)
    with _lock:
        if context.current is not None:
            if ignore_reinit_error:
                return SkateContext(_address_info())
            raise RuntimeError(
                "Maybe you called skate.init twice by accident? This error can be suppressed by "
                "passing in 'ignore_reinit_error=True' or by calling 'skate.shutdown()' first."
            )
        check_namespace(namespace)
        if address in (None, "auto"):  # as Ray: the environment names the cluster first
            address = _address_from_env() or address
        if runtime_env is None and os.environ.get("SKATE_JOB_RUNTIME_ENV"):
            runtime_env = json.loads(os.environ["SKATE_JOB_RUNTIME_ENV"])  # a submitted job's
        validate_runtime_env(runtime_env)
        node_labels = check_node_labels(labels, "init(labels=...)")
        if address not in (None, "local"):
            if any(v is not None for v in (num_cpus, num_gpus, resources, object_store_memory, labels)):
                raise ValueError(
                    "When connecting to an existing cluster, num_cpus, num_gpus, resources, labels and "
                    "object_store_memory must not be given: the cluster's nodes already have them."
                )
            ctx = _connect_driver(address, namespace, log_to_driver)
            _set_job_env(runtime_env)
            return ctx
        _check_count("num_cpus", num_cpus)
        _check_count("num_gpus", num_gpus)
        _check_count("object_store_memory", object_store_memory)
        node_resources, store = node_resources_for(
            num_cpus, num_gpus, resources, object_store_memory, head=True
        )
        node = LocalNode(
            resources=node_resources,
            object_store_memory=store,
            logging_level=logging_level,
            temp_dir=_temp_dir,
            system_config=apply_system_config(_system_config),
            labels=node_labels,
            include_dashboard=bool(include_dashboard),
            dashboard_host=dashboard_host,
            dashboard_port=dashboard_port,
            metrics_export_port=_metrics_port(kwargs.get("_metrics_export_port")),
        )
        info = {
            "worker_id": _ids.random_id(14).hex(),
            "node_id": node.node_id,
            "session_dir": node.session_dir,
            "token": node.token,
            "gcs_address": node.gcs_address,
            "raylet_address": node.raylet_address,
            "namespace": namespace,
            "log_to_driver": log_to_driver,
            "task_events": node.system_config.task_events,
        }
        core = CoreWorker(info, "driver")
        try:
            core.start()
        except BaseException:
            node.shutdown()
            raise
        _node = node
        _set_job_env(runtime_env)
        _gc_tuning.tune(own_process=False)
        return SkateContext(_address_info())


def _address_from_env() -> str | None:
    """The cluster SKATE_ADDRESS or RAY_ADDRESS names, unless it is a job server's URL."""
    for var in ("SKATE_ADDRESS", "RAY_ADDRESS"):
        value = os.environ.get(var, "").strip()
        if value and not value.startswith(("http://", "https://")):
            return value
    return None


def _connect_client(
    address: str, namespace: str | None, runtime_env: dict | None, ignore_reinit_error: bool, extra: dict
) -> Any:
    """`init("skate://host:port")` or `init("ray://host:port")`: see skate.client."""
    from skate.client import connect_client

    check_namespace(namespace)
    validate_runtime_env(runtime_env)
    with _lock:
        return connect_client(
            address,
            namespace=namespace,
            runtime_env=runtime_env,
            metadata=extra.get("_metadata"),
            connect_timeout=extra.get("_connect_timeout"),
            ignore_reinit_error=ignore_reinit_error,
        )


def _set_job_env(runtime_env: dict | None) -> None:
    """Resolve the job-level env (packing and uploading its local paths): every call of this
    driver inherits it. A bad env (a missing working_dir) stops what init started and raises."""
    core = context.current
    if not runtime_env or core is None:
        return
    try:
        core.runtime_envs.set_job_env(runtime_env)
    except BaseException:
        shutdown()
        raise


def _connect_driver(address: str, namespace: str | None, log_to_driver: bool) -> SkateContext:
    """Join a running cluster as a driver: find its token and a raylet on this machine."""
    from skate.scripts.attach import find_sessions, local_raylet

    if not isinstance(address, str):
        raise TypeError(f"address must be a str such as 'auto' or 'host:port', got {address!r}")
    auto = address == "auto"
    sessions = find_sessions(None if auto else address, shared_only=auto)
    token_env = os.environ.get("SKATE_AUTH_TOKEN")
    if not sessions and token_env and not auto:
        sessions = [{"gcs_address": address, "token": token_env.encode()}]
    if not sessions:
        where = "on this machine (start one with `skate start --head`)" if auto else f"at {address}"
        raise ConnectionError(
            f"Could not find a running Skate cluster {where}. On another machine, set SKATE_AUTH_TOKEN."
        )
    errors = []
    for session in sessions:
        try:
            node = local_raylet(session)
        except Exception as exc:
            errors.append(f"{session['gcs_address']}: {exc}")
            continue
        info = {
            "worker_id": _ids.random_id(14).hex(),
            "node_id": node["node_id"],
            "session_dir": node["session_dir"],
            "token": session["token"],
            "gcs_address": session["gcs_address"],
            "raylet_address": node["address"],
            "node_ip": node.get("node_ip", "127.0.0.1"),
            "namespace": namespace,
            "log_to_driver": log_to_driver,
        }
        CoreWorker(info, "driver").start()
        _gc_tuning.tune(own_process=False)
        return SkateContext(_address_info())
    raise ConnectionError(f"Could not connect to a Skate cluster at {address}: {'; '.join(errors)}")


def node_resources_for(
    num_cpus: float | None,
    num_gpus: float | None,
    resources: dict | None,
    object_store_memory: int | None,
    head: bool,
    node_ip: str = "127.0.0.1",
) -> tuple[dict[str, float], int]:
    """A node's resources, with Ray's defaults and names; and its object store size."""
    _check_count("num_cpus", num_cpus)
    _check_count("num_gpus", num_gpus)
    _check_count("object_store_memory", object_store_memory)
    if object_store_memory is not None and object_store_memory < 1024 * 1024:
        raise ValueError(f"object_store_memory must be at least 1 MiB, got {object_store_memory}")
    custom = check_resources(resources)
    total_memory = psutil.virtual_memory().total
    store = int(object_store_memory or total_memory * OBJECT_STORE_MEMORY_FRACTION)
    out: dict[str, float] = {
        "CPU": float(num_cpus if num_cpus is not None else (os.cpu_count() or 1)),
        "memory": float(max(psutil.virtual_memory().available - store, 0) // 1),
        "object_store_memory": float(store),
        f"node:{node_ip}": 1.0,
    }
    if head:
        out["node:__internal_head__"] = 1.0
    gpus = detect_gpus() if num_gpus is None else num_gpus
    if gpus:
        out["GPU"] = float(gpus)
    out.update({k: float(v) for k, v in custom.items()})
    return out, store


def _address_info() -> dict:
    core = _core()
    return {
        "address": core.info["gcs_address"].replace("tcp://", ""),
        "gcs_address": core.info["gcs_address"].replace("tcp://", ""),
        "node_id": core.node_id,
        "session_dir": core.session_dir,
        "raylet_socket_name": core.info["raylet_address"],
        "node_ip_address": "127.0.0.1",
        "webui_url": _node.dashboard_url.replace("http://", "") if _node and _node.dashboard_url else None,
    }


def shutdown() -> None:
    """Disconnect, and stop every process of the local cluster this process started."""
    global _node
    with _lock:
        core = context.current
        if core is not None:
            core.stop()
        if _node is not None:
            _node.shutdown()
            _node = None


atexit.register(shutdown)


context.auto_init = init  # the first use of skate without init() starts a local cluster


def remote(*args: Any, **options: Any) -> Any:
    """Make a function a remote function: `@remote`, `@remote(num_cpus=2)` or `remote(f)`."""
    if len(args) == 1 and not options and callable(args[0]):
        return _make_remote(args[0], {})
    if args or not options:
        from skate._options import ACTOR_OPTIONS, TASK_OPTIONS
        from skate.exceptions import RemoteDecoratorError

        raise RemoteDecoratorError(
            "The @remote decorator must be applied either with no arguments and no parentheses, "
            "for example '@remote', or with keyword options only, some of "
            f"{sorted(set(TASK_OPTIONS) | set(ACTOR_OPTIONS))}, for example "
            "'@remote(num_returns=2, resources={\"CustomResource\": 1})'."
        )

    def decorator(fn: Any) -> Any:
        """Apply the options given to the decorator."""
        return _make_remote(fn, options)

    return decorator


def _make_remote(obj: Any, options: dict) -> Any:
    if isinstance(obj, type):
        from skate.actor import ActorClass

        return ActorClass(obj, options)
    return RemoteFunction(obj, options)


def method(*args: Any, **kwargs: Any) -> Callable:
    """Annotate an actor method with options such as num_returns."""

    from skate._options import METHOD_OPTIONS, validate_options

    validate_options(kwargs, METHOD_OPTIONS, "actor methods")

    def decorator(fn: Callable) -> Callable:
        """Apply the options given to the decorator."""
        fn.__skate_method_options__ = kwargs  # type: ignore[attr-defined]
        return fn

    if args and callable(args[0]) and not kwargs:
        return decorator(args[0])
    return decorator


def put(value: Any, *, _owner: Any = None) -> ObjectRef:
    """Store a value in the cluster and return a reference to it."""
    if isinstance(value, ObjectRef):
        raise TypeError(
            "Calling 'put' on an ObjectRef is not allowed. If you really want to do this, "
            "wrap the ObjectRef in a list: put([ref])."
        )
    return (context.current or current_or_init()).objects.put(value)


def get(object_refs: Any, *, timeout: float | None = None) -> Any:
    """The value of an ObjectRef, or the values of a list of them, waiting as needed."""
    core = context.current or current_or_init()
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or timeout < 0:
            raise ValueError(f"timeout must be a non-negative number or None, got {timeout!r}")
    if type(object_refs) is ObjectRef:
        return core.objects.get([object_refs], timeout)[0]
    if isinstance(object_refs, ObjectRefGenerator):  # as Ray: handed back, not waited on
        return object_refs
    if isinstance(object_refs, (list, tuple)):
        for i, ref in enumerate(object_refs):
            if isinstance(ref, ObjectRefGenerator):
                raise TypeError(
                    f"get() expects ObjectRefs, but item {i} of the list is an ObjectRefGenerator "
                    f"({ref!r}): iterate it (`for ref in gen`) and get each ref it yields"
                )
            if not isinstance(ref, ObjectRef):
                raise TypeError(
                    f"get() expects ObjectRefs, but item {i} of the list is a "
                    f"{type(ref).__name__}: {ref!r:.60}"
                )
        return core.objects.get(list(object_refs), timeout)
    raise TypeError(
        f"get() expects an ObjectRef or a list of ObjectRefs, got a {type(object_refs).__name__}: "
        f"{object_refs!r:.60}"
    )


def wait(
    object_refs: Sequence[ObjectRef | ObjectRefGenerator],
    *,
    num_returns: int = 1,
    timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list[Any], list[Any]]:
    """Split refs and generators into (ready, not ready) once num_returns are ready or the
    timeout passes. A generator is ready when next() on it would not wait: its next item has
    arrived, or its task has ended (as Ray 2.x counts an ObjectRefGenerator)."""
    core = current_or_init()
    if isinstance(object_refs, (ObjectRef, ObjectRefGenerator)):
        raise TypeError(
            f"wait() expects a list of ObjectRefs or ObjectRefGenerators, not a single "
            f"{type(object_refs).__name__}: wait([x])"
        )
    if not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"wait() expects a list of ObjectRefs, got {type(object_refs).__name__}")
    streams: dict[bytes, Any] = {}  # a key of each generator -> its stream
    for i, ref in enumerate(object_refs):
        if not isinstance(ref, ObjectRef):
            if not isinstance(ref, ObjectRefGenerator):
                raise TypeError(
                    f"wait() expects ObjectRefs or ObjectRefGenerators, but item {i} is a "
                    f"{type(ref).__name__}"
                )
            streams[_generator_key(ref)] = ref._stream
    if streams:
        keys = [r._id if isinstance(r, ObjectRef) else _generator_key(r) for r in object_refs]
        refs = [r for r in object_refs if isinstance(r, ObjectRef)]
    else:  # only refs (checked above)
        refs = list(object_refs)
        keys = [r._id for r in refs]
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or timeout < 0
    ):
        raise ValueError(f"timeout must be a non-negative number or None, got {timeout!r}")
    if not isinstance(fetch_local, bool):
        raise TypeError("fetch_local must be a bool")
    if not object_refs:  # as Ray: nothing to wait for, whatever num_returns says
        return [], []
    if len(set(keys)) != len(keys):
        raise ValueError("wait() requires a list of unique ObjectRefs; the list has duplicates")
    if isinstance(num_returns, bool) or not isinstance(num_returns, int) or num_returns <= 0:
        raise ValueError(f"num_returns must be a positive int, got {num_returns!r}")
    if num_returns > len(object_refs):
        raise ValueError(
            f"num_returns ({num_returns}) cannot be larger than the number of refs ({len(object_refs)})"
        )
    if streams:
        ready_ids = set(core.objects.wait(refs, num_returns, timeout, fetch_local, streams))
    else:
        ready_ids = set(core.objects.wait(refs, num_returns, timeout, fetch_local))
    ready: list[Any] = []
    not_ready: list[Any] = []
    for ref, key in zip(object_refs, keys):
        if key in ready_ids and len(ready) < num_returns:
            ready.append(ref)
        else:
            not_ready.append(ref)
    return ready, not_ready


def _generator_key(gen: ObjectRefGenerator) -> bytes:
    """What stands for a generator among the object ids `wait` works with (never an object id:
    those have a fixed size)."""
    return b"generator:" + gen.task_id()


def cancel(object_ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that makes `object_ref`: TaskCancelledError at its get."""
    if isinstance(object_ref, ObjectRefGenerator):  # cancel the generator task itself
        if force and object_ref._stream.actor_call:
            raise ValueError(
                f"force=True is not supported for actor tasks: {object_ref!r} streams an actor "
                "method's items (kill the actor to stop it at once)"
            )
        object_ref = object_ref.completed()
    if not isinstance(object_ref, ObjectRef):
        raise TypeError(f"cancel() expects an ObjectRef, got {type(object_ref).__name__}")
    core = current_or_init()
    if object_ref._owner is None:
        core.post(core.submitter.cancel, object_ref._id, bool(force), bool(recursive))
    else:  # a borrowed ref: its owner submitted the task, and cancels it
        core.post(
            core.submitter.forward_cancel, object_ref._owner, object_ref._id, bool(force), bool(recursive)
        )


def nodes() -> list[dict]:
    """Every node of the cluster, alive or dead, in Ray's format."""
    core = _core()
    out = []
    for n in core.request(core.gcs, "get_nodes"):
        out.append(
            {
                "NodeID": n["node_id"],
                "Alive": n["alive"],
                "alive": n["alive"],
                "NodeManagerAddress": n.get("node_ip", "127.0.0.1"),
                "NodeManagerHostname": os.uname().nodename,
                "NodeManagerPort": 0,
                "RayletSocketName": n["address"],
                "ObjectStoreSocketName": n.get("arena_path"),
                "Resources": dict(n["resources"]),
                "Labels": dict(n.get("labels") or {}),
                "ObjectStoreUsedBytes": n.get("store_used", 0),
                "MetricsExportPort": n.get("metrics_export_port", 0),
            }
        )
    return out


def _sum_resources(field: str) -> dict[str, float]:
    core = _core()
    total: dict[str, float] = {}
    for n in core.request(core.gcs, "get_nodes"):
        if not n["alive"]:
            continue
        for k, v in (n.get(field) or {}).items():
            total[k] = total.get(k, 0.0) + v
    return {k: v for k, v in total.items() if v > 0}


def cluster_resources() -> dict[str, float]:
    """Total resources of the alive nodes."""
    return _sum_resources("resources")


def available_resources() -> dict[str, float]:
    """Resources not held by running tasks, over the alive nodes."""
    return _sum_resources("available")


def get_gpu_ids() -> list[int]:
    """The GPU ids assigned to the current task or actor (CUDA_VISIBLE_DEVICES is set to them)."""
    return list(current_or_init().gpu_ids)


def detect_gpus() -> int:
    """GPUs on this machine: CUDA_VISIBLE_DEVICES if set, else what `nvidia-smi -L` lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def kill(actor: Any, *, no_restart: bool = True) -> None:
    """Kill an actor now: calls in flight and later fail with ActorDiedError."""
    from skate.actor import ActorHandle

    if not isinstance(actor, ActorHandle):
        raise ValueError(f"kill() is only supported for actors: it takes an actor handle, got {type(actor)}.")
    if not isinstance(no_restart, bool):
        raise TypeError("no_restart must be a bool")
    current_or_init().actor_submitter.kill(actor._actor_id, actor._class_name, no_restart)


def get_actor(name: str, namespace: str | None = None) -> Any:
    """The handle of the named actor; ValueError when there is none."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"get_actor() needs a non-empty actor name, got {name!r}")
    check_namespace(namespace)
    from skate.actor import _handle_from_info

    core = current_or_init()
    return _handle_from_info(core.actor_submitter.get_named(name, namespace), core)
