"""Skate: a distributed computing runtime for Python with Ray's programming model.

`import skate as ray` and run a Ray-core program unchanged.
"""

import importlib as _importlib
import typing as _typing

# The public names, loaded on first use (PEP 562): `import skate` stays cheap, and the cluster's
# own processes (GCS, raylet, workers), which import the package but not its driver API, skip it.
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        [
            "RayContext",
            "SkateContext",
            "available_resources",
            "cancel",
            "cluster_resources",
            "get",
            "get_actor",
            "get_gpu_ids",
            "init",
            "is_initialized",
            "kill",
            "method",
            "nodes",
            "put",
            "remote",
            "shutdown",
            "wait",
        ],
        "skate._api",
    ),
    **dict.fromkeys(["ActorID", "JobID", "NodeID", "TaskID", "WorkerID"], "skate._id_types"),
    **dict.fromkeys(["ActorClass", "ActorHandle"], "skate.actor"),
    "ObjectRef": "skate.object_ref",
    **dict.fromkeys(["DynamicObjectRefGenerator", "ObjectRefGenerator"], "skate.object_ref_generator"),
    "ClientBuilder": "skate.client",
    "ObjectID": "skate.object_ref",  # Ray's older name for ObjectRef, kept as an alias
    "RemoteFunction": "skate.remote_function",
    **dict.fromkeys(["RuntimeContext", "get_runtime_context"], "skate.runtime_context"),
    "timeline": "skate.util.state.timeline",
}
_SUBMODULES = ("actor", "client", "exceptions", "util")


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(_importlib.import_module(module), "ObjectRef" if name == "ObjectID" else name)
    elif name in _SUBMODULES:
        value = _importlib.import_module(f"skate.{name}")
    else:
        raise AttributeError(f"module 'skate' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if _typing.TYPE_CHECKING:  # what type checkers and IDEs see
    from skate import actor, client, exceptions, util
    from skate._api import (
        RayContext,
        SkateContext,
        available_resources,
        cancel,
        cluster_resources,
        get,
        get_actor,
        get_gpu_ids,
        init,
        is_initialized,
        kill,
        method,
        nodes,
        put,
        remote,
        shutdown,
        wait,
    )
    from skate._id_types import ActorID, JobID, NodeID, TaskID, WorkerID
    from skate.actor import ActorClass, ActorHandle
    from skate.client import ClientBuilder
    from skate.object_ref import ObjectRef
    from skate.object_ref import ObjectRef as ObjectID
    from skate.object_ref_generator import DynamicObjectRefGenerator, ObjectRefGenerator
    from skate.remote_function import RemoteFunction
    from skate.runtime_context import RuntimeContext, get_runtime_context

__version__ = "0.1.0"

__all__ = [
    "ActorClass",
    "ActorHandle",
    "ActorID",
    "ClientBuilder",
    "DynamicObjectRefGenerator",
    "JobID",
    "NodeID",
    "ObjectID",
    "ObjectRef",
    "ObjectRefGenerator",
    "RayContext",
    "RemoteFunction",
    "RuntimeContext",
    "SkateContext",
    "TaskID",
    "WorkerID",
    "__version__",
    "actor",
    "available_resources",
    "cancel",
    "client",
    "cluster_resources",
    "exceptions",
    "get",
    "get_actor",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "kill",
    "method",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "timeline",
    "util",
    "wait",
]
