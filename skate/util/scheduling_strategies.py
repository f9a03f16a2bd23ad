"""Scheduling strategies for tasks and actors (Ray's names)."""

from __future__ import annotations

from typing import Any

from skate import _labels


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


def _operator_values(values: tuple, operator: str) -> tuple[str, ...]:
    if not values:
        raise ValueError(f'{operator}() needs one or more values, e.g. {operator}("value1", "value2")')
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise ValueError(
                f"{operator}(): the value in position {i} must be a str, got {type(value).__name__} {value!r}"
            )
    return tuple(values)


class In:
    """The node's label has one of these values."""

    op = _labels.IN

    def __init__(self, *values: str):
        self.values = list(_operator_values(values, "In"))

    def __repr__(self) -> str:
        return f"In({', '.join(map(repr, self.values))})"


class NotIn:
    """The node's label has none of these values, or the node lacks the label."""

    op = _labels.NOT_IN

    def __init__(self, *values: str):
        self.values = list(_operator_values(values, "NotIn"))

    def __repr__(self) -> str:
        return f"NotIn({', '.join(map(repr, self.values))})"


class Exists:
    """The node has the label, whatever its value."""

    op = _labels.EXISTS
    values: list[str] = []

    def __repr__(self) -> str:
        return "Exists()"


class DoesNotExist:
    """The node lacks the label."""

    op = _labels.DOES_NOT_EXIST
    values: list[str] = []

    def __repr__(self) -> str:
        return "DoesNotExist()"


_OPERATOR_TYPES = (In, NotIn, Exists, DoesNotExist)


class _LabelMatchExpression:
    """One `key: operator` entry of a NodeLabelSchedulingStrategy (Ray's shape)."""

    def __init__(self, key: str, operator: Any):
        self.key = key
        self.operator = operator

    def __repr__(self) -> str:
        return f"{self.key!r}: {self.operator!r}"


def _expressions(value: Any, param: str) -> list[_LabelMatchExpression]:
    if value is None:
        return []
    if not isinstance(value, dict):
        raise ValueError(
            f'NodeLabelSchedulingStrategy: {param} must be a dict such as {{"zone": In("a")}}, '
            f"got {type(value).__name__} {value!r}"
        )
    out = []
    for key, operator in value.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"NodeLabelSchedulingStrategy: {param} keys must be non-empty str, got {key!r}")
        if not isinstance(operator, _OPERATOR_TYPES):
            raise ValueError(
                f"NodeLabelSchedulingStrategy: {param}[{key!r}] must be In(...), NotIn(...), Exists() or "
                f"DoesNotExist(), got {type(operator).__name__} {operator!r}"
            )
        out.append(_LabelMatchExpression(key, operator))
    return out


class NodeLabelSchedulingStrategy:
    """Run on a node whose labels satisfy every `hard` expression; among those, prefer nodes that
    also satisfy the `soft` ones. With no matching node the task or actor waits (a node may join).

        NodeLabelSchedulingStrategy({"zone": In("a", "b"), "gpu": Exists()}, soft={"disk": In("ssd")})
    """

    def __init__(self, hard: dict | None, *, soft: dict | None = None):
        self.hard = _expressions(hard, "hard")
        self.soft = _expressions(soft, "soft")
        if not (self.hard or self.soft):
            raise ValueError("NodeLabelSchedulingStrategy: hard and soft cannot both be empty")

    def _constraint(self) -> tuple[tuple, tuple]:
        """The wire form (see skate._labels): (hard expressions, soft expressions)."""

        def wire(exprs: list[_LabelMatchExpression]) -> tuple:
            return tuple(_labels.expression(e.key, e.operator.op, e.operator.values) for e in exprs)

        return wire(self.hard), wire(self.soft)

    def __repr__(self) -> str:
        return f"NodeLabelSchedulingStrategy(hard={self.hard}, soft={self.soft})"


STRATEGY_NAMES = ("DEFAULT", "SPREAD")
STRATEGY_TYPES = (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
    NodeLabelSchedulingStrategy,
)

__all__ = [
    "DoesNotExist",
    "Exists",
    "In",
    "NodeAffinitySchedulingStrategy",
    "NodeLabelSchedulingStrategy",
    "NotIn",
    "PlacementGroupSchedulingStrategy",
]
