"""Skate: a distributed computing runtime for Python with Ray's programming model.

`import skate as ray` and run a Ray-core program unchanged.
"""

from skate import exceptions, util
from skate._api import (
    RayContext,
    SkateContext,
    available_resources,
    cancel,
    cluster_resources,
    get,
    get_gpu_ids,
    init,
    is_initialized,
    method,
    nodes,
    put,
    remote,
    shutdown,
    wait,
)
from skate.object_ref import ObjectRef
from skate.remote_function import RemoteFunction
from skate.runtime_context import RuntimeContext, get_runtime_context

__version__ = "0.1.0"

__all__ = [
    "ObjectRef",
    "RayContext",
    "RemoteFunction",
    "RuntimeContext",
    "SkateContext",
    "__version__",
    "available_resources",
    "cancel",
    "cluster_resources",
    "exceptions",
    "get",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "method",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "util",
    "wait",
]
