"""The public surface: `import skate as ray` names what Ray core names."""

from __future__ import annotations

import types

import skate
import skate as ray

RAY_CORE_NAMES = {
    "init",
    "shutdown",
    "is_initialized",
    "remote",
    "method",
    "get",
    "put",
    "wait",
    "cancel",
    "nodes",
    "cluster_resources",
    "available_resources",
    "get_runtime_context",
    "get_gpu_ids",
    "ObjectRef",
    "exceptions",
    "util",
}

RAY_EXCEPTION_NAMES = [
    "RayError",
    "RayTaskError",
    "RayActorError",
    "GetTimeoutError",
    "TaskCancelledError",
    "WorkerCrashedError",
    "ObjectLostError",
    "OwnerDiedError",
    "ObjectStoreFullError",
    "RuntimeEnvSetupError",
    "NodeDiedError",
    "ActorDiedError",
    "RaySystemError",
]


def test_all_lists_existing_unique_names():
    names = skate.__all__
    assert len(names) == len(set(names)), "duplicates in __all__"
    for name in names:
        assert hasattr(skate, name), f"__all__ names {name!r} but skate has no such attribute"


# the submodules Ray lists in ray.__all__ too (`client` is a callable module: `skate.client(addr)`)
PUBLIC_SUBMODULES = {"exceptions", "util", "actor", "client"}


def test_all_is_exactly_the_public_names():
    for name in skate.__all__:  # public names load on first use: load them all
        getattr(skate, name)
    public = set()
    for name, value in vars(skate).items():
        if name.startswith("_"):
            continue
        # submodules that merely happen to be imported are not API; the documented ones are
        if isinstance(value, types.ModuleType) and name not in PUBLIC_SUBMODULES:
            continue
        public.add(name)
    assert public == set(skate.__all__) - {"__version__"}
    for name in set(skate.__all__) & PUBLIC_SUBMODULES:
        assert isinstance(getattr(skate, name), types.ModuleType), name


def test_ray_core_names_are_present():
    missing = RAY_CORE_NAMES - set(skate.__all__)
    assert not missing, missing
    for name in RAY_CORE_NAMES - {"exceptions", "util", "ObjectRef"}:
        assert callable(getattr(ray, name)), name
    assert isinstance(skate.__version__, str)


def test_star_import_gives_the_public_names():
    namespace: dict = {}
    exec("from skate import *", namespace)
    namespace.pop("__builtins__", None)
    assert set(namespace) == set(skate.__all__)


def test_exceptions_have_ray_names():
    exc = ray.exceptions
    for name in RAY_EXCEPTION_NAMES:
        cls = getattr(exc, name, None)
        assert isinstance(cls, type) and issubclass(cls, Exception), name
        assert issubclass(cls, exc.RayError), name
        assert name in exc.__all__, name


def test_exception_hierarchy_matches_ray():
    exc = ray.exceptions
    assert issubclass(exc.GetTimeoutError, TimeoutError)
    assert issubclass(exc.OwnerDiedError, exc.ObjectLostError)
    assert issubclass(exc.ActorDiedError, exc.RayActorError)
    assert exc.RayError is exc.SkateError


def test_ray_task_error_as_instance_of_cause():
    cause = KeyError("k")
    err = ray.exceptions.RayTaskError("fn", "Traceback: ...", cause, 1, "127.0.0.1")
    dual = err.as_instanceof_cause()
    assert isinstance(dual, KeyError) and isinstance(dual, ray.exceptions.RayTaskError)
    assert "fn" in str(dual)


def test_remote_function_and_context_types_exported():
    assert isinstance(skate.remote(lambda: 1), skate.RemoteFunction)
    assert skate.RayContext is skate.SkateContext


def test_util_scheduling_strategies_importable():
    from skate.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: F401

    assert hasattr(skate.util, "scheduling_strategies")
