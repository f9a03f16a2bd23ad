"""Utilities around the core API (Ray's `ray.util`)."""

from __future__ import annotations

from skate.util import scheduling_strategies
from skate.util.actor_pool import ActorPool
from skate.util.check_serialize import inspect_serializability
from skate.util.placement_group import (
    PlacementGroup,
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from skate.util.serialization import deregister_serializer, register_serializer


def list_named_actors(all_namespaces: bool = False) -> list:
    """Names of the live named actors in this job's namespace, or every namespace's as
    dicts {"name", "namespace"} with all_namespaces=True."""
    from skate._api import _core

    core = _core()
    if core.gcs is None:
        raise RuntimeError("list_named_actors: this process is not connected to the cluster's GCS")
    return core.request(
        core.gcs, "list_named_actors", {"all_namespaces": bool(all_namespaces), "namespace": core.namespace}
    )


__all__ = [
    "ActorPool",
    "PlacementGroup",
    "deregister_serializer",
    "get_current_placement_group",
    "get_placement_group",
    "inspect_serializability",
    "list_named_actors",
    "placement_group",
    "placement_group_table",
    "register_serializer",
    "remove_placement_group",
    "scheduling_strategies",
]
