"""Scheduling strategies for tasks and actors (Ray's names)."""

from __future__ import annotations

from typing import Any


class NodeAffinitySchedulingStrategy:
    """Run on the node with `node_id`; if `soft`, elsewhere when that node cannot."""

    def __init__(
        self,
        node_id: str,
        soft: bool,
        _spill_on_unavailable: bool = False,
        _fail_on_unavailable: bool = False,
    ):
        if not isinstance(node_id, str):
            raise TypeError(f"node_id must be a hex str, got {type(node_id).__name__}")
        if not isinstance(soft, bool):
            raise TypeError(f"soft must be a bool, got {type(soft).__name__}")
        self.node_id = node_id
        self.soft = soft
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    def __repr__(self) -> str:
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"


class PlacementGroupSchedulingStrategy:
    """Run inside a bundle of a placement group."""

    def __init__(
        self,
        placement_group: Any,
        placement_group_bundle_index: int = -1,
        placement_group_capture_child_tasks: bool | None = None,
    ):
        if not isinstance(placement_group_bundle_index, int) or placement_group_bundle_index < -1:
            raise ValueError(
                f"placement_group_bundle_index must be an int >= -1, got {placement_group_bundle_index!r}"
            )
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks


STRATEGY_NAMES = ("DEFAULT", "SPREAD")
STRATEGY_TYPES = (NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy)

__all__ = ["NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy"]
