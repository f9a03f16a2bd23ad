"""`skate.__all__` is what skate/__init__.py defines, and holds Ray 2.60's top-level names.

Also the smaller names Ray programs import: skate.types.ObjectRef, LocalRayletDiedError.
"""

from __future__ import annotations

import ast
import os
import pickle
import re

import pytest

import skate
from skate import exceptions as ex

# Ray 2.60's `ray.__all__` (python/ray/__init__.py): its public APIs, then its subpackages,
# then its ID types, in Ray's order.
RAY_ALL = [
    "__version__",
    "_config",
    "get_runtime_context",
    "autoscaler",
    "available_resources",
    "cancel",
    "client",
    "ClientBuilder",
    "cluster_resources",
    "get",
    "get_actor",
    "get_gpu_ids",
    "init",
    "is_initialized",
    "java_actor_class",
    "java_function",
    "cpp_function",
    "kill",
    "Language",
    "method",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "show_in_dashboard",
    "timeline",
    "wait",
    "LOCAL_MODE",
    "SCRIPT_MODE",
    "WORKER_MODE",
    "LoggingConfig",
    # subpackages
    "actor",
    "autoscaler",
    "data",
    "internal",
    "util",
    "widgets",
    "workflow",
    # ID types
    "ActorClassID",
    "ActorID",
    "NodeID",
    "JobID",
    "WorkerID",
    "FunctionID",
    "ObjectID",
    "ObjectRef",
    "ObjectRefGenerator",
    "DynamicObjectRefGenerator",
    "TaskID",
    "UniqueID",
    "PlacementGroupID",
]

# Ray's names Skate does not provide yet, each with why, or the issue that will add it.
# Remove a name from here in the change that adds it to skate.__all__.
NOT_YET = {
    # Placement groups: issue 13.
    "PlacementGroupID": "placement groups, issue 13",
    # Observability: issue 17.
    "show_in_dashboard": "dashboard messages, observability issue 17 (there is no dashboard yet)",
    "LoggingConfig": "init(logging_config=...), observability issue 17",
    # Cross-language calls: out of scope (Skate runs Python only).
    "java_function": "cross-language, out of scope",
    "java_actor_class": "cross-language, out of scope",
    "cpp_function": "cross-language, out of scope",
    "Language": "cross-language enum, out of scope",
    # Ray's internals that Ray programs do not need.
    "_config": "Ray's internal system-config object; Skate reads its settings from the environment",
    "LOCAL_MODE": "worker-mode constant of Ray's internals (local mode is deprecated in Ray)",
    "SCRIPT_MODE": "worker-mode constant of Ray's internals",
    "WORKER_MODE": "worker-mode constant of Ray's internals",
    "ActorClassID": "internal ID type; add to skate._id_types when a program needs it",
    "FunctionID": "internal ID type; add to skate._id_types when a program needs it",
    "UniqueID": "internal ID type; add to skate._id_types when a program needs it",
    "internal": "ray.internal (internal.free): not scheduled yet (no issue)",
    # Ray's libraries and tooling beyond the core: out of scope.
    "autoscaler": "cluster autoscaling, out of scope",
    "data": "Ray Data library, out of scope",
    "workflow": "Ray Workflows library, out of scope",
    "widgets": "notebook widgets, out of scope",
}


def _names_bound_in_init() -> set[str]:
    """Public names skate/__init__.py binds: at its top level (imports and assignments), and
    those it loads on first use (its `_LAZY` table and `_SUBMODULES`)."""
    with open(os.path.join(os.path.dirname(skate.__file__), "__init__.py")) as f:
        tree = ast.parse(f.read())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
    names |= set(skate._LAZY) | set(skate._SUBMODULES)
    return {n for n in names if not n.startswith("_") or n == "__version__"} - {"__all__"}


def test_all_is_what_init_defines():
    assert len(skate.__all__) == len(set(skate.__all__)), "a name is listed twice"
    assert set(skate.__all__) == _names_bound_in_init()
    for name in skate.__all__:
        assert hasattr(skate, name), name


def test_all_holds_every_ray_name_but_those_listed_as_not_yet():
    missing = set(RAY_ALL) - set(skate.__all__)
    assert missing - set(NOT_YET) == set(), "Ray names missing and not accounted for"
    assert set(NOT_YET) - missing == set(), "provided now: remove them from NOT_YET"
    assert all(reason.strip() for reason in NOT_YET.values())


def test_ray_id_names_are_the_skate_types():
    assert skate.ObjectID is skate.ObjectRef
    for name in ("NodeID", "JobID", "ActorID", "TaskID", "WorkerID"):
        assert getattr(skate, name).__name__ == name


def test_types_object_ref_annotates_and_matches_real_refs():
    from skate.object_ref import ObjectRef as RealRef
    from skate.types import ObjectRef

    alias = ObjectRef[int]
    assert alias.__origin__ is ObjectRef and alias.__args__ == (int,)

    def typed(ref: ObjectRef[int]) -> ObjectRef[str]:
        return ref  # type: ignore[return-value]

    assert typed.__annotations__["ref"] == "ObjectRef[int]"  # postponed, as in user code
    ref = RealRef(os.urandom(20))  # no cluster: a bare reference, nothing counted
    assert isinstance(ref, ObjectRef) and issubclass(RealRef, ObjectRef)
    assert not isinstance(b"id", ObjectRef) and not issubclass(bytes, ObjectRef)
    with pytest.raises(TypeError, match="for annotations"):
        ObjectRef()


def test_local_raylet_died_error():
    err = ex.LocalRayletDiedError()
    assert isinstance(err, ex.RayError) and not isinstance(err, ex.RaySystemError)
    assert "raylet" in str(err)
    assert "LocalRayletDiedError" in ex.__all__
    assert "LocalRayletDiedError" in ex.__doc__  # the hierarchy in the module docstring
    back = pickle.loads(pickle.dumps(ex.LocalRayletDiedError("gone")))
    assert type(back) is ex.LocalRayletDiedError and str(back) == "gone"


def test_exceptions_docstring_tree_names_every_class():
    for name in ex.__all__:
        if name != "RayError":  # an alias of SkateError, the tree's root
            assert re.search(rf"^[│├└─ ]*{name}\b", ex.__doc__, flags=re.M), name
