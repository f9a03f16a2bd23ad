"""Skate: a distributed computing runtime for Python with Ray's programming model.

`import skate as ray` and run a Ray-core program unchanged.
"""

from skate import actor, exceptions, util
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
from skate.object_ref import ObjectRef
from skate.remote_function import RemoteFunction
from skate.runtime_context import RuntimeContext, get_runtime_context

ObjectID = ObjectRef  # Ray's older name for ObjectRef, kept as an alias

__version__ = "0.1.0"

__all__ = [
    "ActorClass",
    "ActorHandle",
    "ActorID",
    "JobID",
    "NodeID",
    "ObjectID",
    "ObjectRef",
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
    "util",
    "wait",
]
