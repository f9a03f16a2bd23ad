"""Validating the options of `remote(...)` and `.options(...)`, with errors that name the culprit."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

from skate import _labels
from skate._bundles import rewrite_demand
from skate._runtime_env import validate_runtime_env
from skate.core_worker.call_context import current_call
from skate.util.scheduling_strategies import (
    STRATEGY_NAMES,
    STRATEGY_TYPES,
    NodeAffinitySchedulingStrategy,
    NodeLabelSchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)


def _quantity(name: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
        if value > 1 and float(value) != int(value):  # type: ignore[call-overload,operator]
            raise ValueError(f"{name}: quantities above 1 must be whole numbers, got {value}")
        if round(value, 4) != value:
            raise ValueError(f"{name}: at most 4 decimal places are supported, got {value}")
        return value

    return check


def _int_at_least(name: str, low: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
        return value

    return check


def check_resources(value: Any) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"resources must be a dict of str to number, got {type(value).__name__}")
    for key, amount in value.items():
        if not isinstance(key, str):
            raise TypeError(f"resource names must be str, got {key!r}")
        if key in ("CPU", "GPU"):
            raise ValueError(f"Use the 'num_cpus' and 'num_gpus' keywords instead of {key!r} in 'resources'.")
        _quantity(f"resources[{key!r}]")(amount)
    return dict(value)


def _num_returns(value: Any) -> Any:
    if value in ("streaming", "dynamic"):  # a generator task (see object_ref_generator)
        return value
    if isinstance(value, str):
        raise ValueError(f"num_returns must be an int >= 0, 'streaming' or 'dynamic', got {value!r}")
    return _int_at_least("num_returns", 0)(value)


def generator_spec(num_returns: Any, options: dict[str, Any]) -> list | None:
    """`TaskSpec.generator` for a call with these options: [mode, backpressure threshold,
    items the owner already has], or None for an ordinary call."""
    if not isinstance(num_returns, str):
        return None
    threshold = options.get("_generator_backpressure_num_objects")
    if num_returns == "dynamic" or threshold is None:
        threshold = -1
    return [num_returns, threshold, 0]


def generator_call(num_returns: Any, options: dict[str, Any], core: Any) -> tuple[Any, dict[str, Any]]:
    """The `num_returns` to submit with and the extra keyword arguments of a submission:
    a generator call returns one ref (its completion; the items come through its stream) and
    carries `generator=`. A generator over a core without streams (the client) is refused."""
    generator = generator_spec(num_returns, options)
    if generator is None:
        return num_returns, {}
    if not hasattr(core, "streams"):
        raise NotImplementedError(
            f"num_returns={num_returns!r} (generator tasks) is not supported over Skate Client yet"
        )
    return 1, {"generator": generator}


def _retry_exceptions(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, type) and issubclass(v, BaseException) for v in value
    ):
        return list(value)
    raise TypeError(f"retry_exceptions must be a bool or a list of exception types, got {value!r}")


def _strategy(value: Any) -> Any:
    if value is None or value in STRATEGY_NAMES or isinstance(value, STRATEGY_TYPES):
        return value
    raise ValueError(
        f"scheduling_strategy must be one of {STRATEGY_NAMES}, a NodeAffinitySchedulingStrategy, a "
        f"NodeLabelSchedulingStrategy or a PlacementGroupSchedulingStrategy; got {value!r}"
    )


def _label_selector(value: Any) -> Any:
    """Checked at `.options()` / `@remote` time, so a bad selector fails at the call site."""
    _labels.parse_label_selector(value)
    return None if value is None else dict(value)


def _name(value: Any) -> Any:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"name must be a str, got {type(value).__name__}")
    return value


def _accept(value: Any) -> Any:
    return value


def _task_events(value: Any) -> Any:
    """`enable_task_events`: None (the default: on, or an actor's choice for its methods) or a bool."""
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"enable_task_events must be a bool, got {type(value).__name__} {value!r}")
    return value


TASK_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "num_cpus": _quantity("num_cpus"),
    "num_gpus": _quantity("num_gpus"),
    "resources": check_resources,
    "memory": _quantity("memory"),
    "num_returns": _num_returns,
    "_generator_backpressure_num_objects": _int_at_least("_generator_backpressure_num_objects", -1),
    "max_retries": _int_at_least("max_retries", -1),
    "retry_exceptions": _retry_exceptions,
    "max_calls": _int_at_least("max_calls", 0),
    "name": _name,
    "scheduling_strategy": _strategy,
    "runtime_env": validate_runtime_env,
    "accelerator_type": _accept,
    "label_selector": _label_selector,
    "enable_task_events": _task_events,
    "_metadata": _accept,
    "placement_group": _accept,
    "placement_group_bundle_index": _int_at_least("placement_group_bundle_index", -1),
    "placement_group_capture_child_tasks": _accept,
}

TASK_DEFAULTS: dict[str, Any] = {
    "num_cpus": 1,
    "num_gpus": 0,
    "resources": {},
    "memory": 0,
    "num_returns": 1,
    "max_retries": 3,
    "retry_exceptions": False,
    "max_calls": 0,
    "name": None,
    "scheduling_strategy": None,
    "runtime_env": None,
}


def validate_options(options: dict[str, Any], allowed: dict[str, Callable[[Any], Any]], what: str) -> dict:
    """Check every option; unknown names raise ValueError listing the valid ones."""
    out = {}
    for key, value in options.items():
        check = allowed.get(key)
        if check is None:
            raise ValueError(f"Invalid option keyword {key!r} for {what}. Valid ones are {sorted(allowed)}.")
        out[key] = check(value)
    return out


def resource_shape(options: dict[str, Any]) -> dict[str, float]:
    """The resources a task holds while it runs."""
    shape: dict[str, float] = {}
    cpus = options.get("num_cpus")
    if cpus is None:
        cpus = 1
    if cpus:
        shape["CPU"] = float(cpus)
    gpus = options.get("num_gpus") or 0
    if gpus:
        shape["GPU"] = float(gpus)
    memory = options.get("memory") or 0
    if memory:
        shape["memory"] = float(memory)
    for key, amount in (options.get("resources") or {}).items():
        if amount:
            shape[key] = float(amount)
    return shape


def _lifetime(value: Any) -> Any:
    if value in (None, "detached", "non_detached"):
        return value
    raise ValueError(f"lifetime must be None, 'detached' or 'non_detached', got {value!r}")


def _actor_name(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"name must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError("Actor name cannot be an empty string.")
    return value


def check_namespace(value: Any) -> Any:
    """A namespace is None (the job's own) or a non-empty str: TypeError for another type,
    ValueError for "" (as Ray), wherever one is given."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"namespace must be None or a str, got {type(value).__name__} {value!r}")
    if not value:
        raise ValueError('"" is not a valid namespace. Pass None to use the job\'s namespace.')
    return value


def _max_concurrency(value: Any) -> Any:
    if value is None:
        return None
    return _int_at_least("max_concurrency", 1)(value)


def _concurrency_groups(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"concurrency_groups must be a dict of name to max concurrency, got {value!r}")
    for name, limit in value.items():
        if not isinstance(name, str):
            raise TypeError(f"concurrency group names must be str, got {name!r}")
        _int_at_least(f"concurrency_groups[{name!r}]", 1)(limit)
    return dict(value)


def _bool(name: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, got {value!r}")
        return value

    return check


ACTOR_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "num_cpus": _quantity("num_cpus"),
    "num_gpus": _quantity("num_gpus"),
    "resources": check_resources,
    "memory": _quantity("memory"),
    "name": _actor_name,
    "namespace": check_namespace,
    "get_if_exists": _bool("get_if_exists"),
    "lifetime": _lifetime,
    "max_restarts": _int_at_least("max_restarts", -1),
    "max_task_retries": _int_at_least("max_task_retries", -1),
    "max_concurrency": _max_concurrency,
    "concurrency_groups": _concurrency_groups,
    "scheduling_strategy": _strategy,
    "runtime_env": validate_runtime_env,
    "max_pending_calls": _int_at_least("max_pending_calls", -1),
    "allow_out_of_order_execution": _accept,
    "enable_task_events": _task_events,
    "label_selector": _label_selector,
    "accelerator_type": _accept,
    "_metadata": _accept,
    "placement_group": _accept,
    "placement_group_bundle_index": _int_at_least("placement_group_bundle_index", -1),
    "placement_group_capture_child_tasks": _accept,
}

ACTOR_DEFAULTS: dict[str, Any] = {
    "num_cpus": None,
    "num_gpus": 0,
    "resources": {},
    "memory": 0,
    "name": None,
    "namespace": None,
    "get_if_exists": False,
    "lifetime": None,
    "max_restarts": 0,
    "max_task_retries": 0,
    "max_concurrency": None,
    "concurrency_groups": None,
    "scheduling_strategy": None,
    "runtime_env": None,
}

METHOD_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "num_returns": _num_returns,
    "_generator_backpressure_num_objects": _int_at_least("_generator_backpressure_num_objects", -1),
    "concurrency_group": _name,
    "max_task_retries": _int_at_least("max_task_retries", -1),
    "retry_exceptions": _retry_exceptions,
    "name": _name,
    "enable_task_events": _task_events,
}


def actor_shapes(options: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """(resources to place the actor, resources it holds while alive): Ray's defaults are
    one CPU to schedule and none held, unless num_cpus is set."""
    hold = resource_shape({**options, "num_cpus": options.get("num_cpus") or 0})
    place = dict(hold)
    if options.get("num_cpus") is None:
        place["CPU"] = 1.0
    return place, hold


def wire_strategy(strategy: Any) -> Any:
    """A scheduling strategy as the owner's submitter uses it: None, "SPREAD", or
    {"node_id", "soft"} for node affinity (placement groups come later)."""
    if strategy is None or strategy == "DEFAULT":
        return None
    if strategy == "SPREAD":
        return "SPREAD"
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return {"node_id": strategy.node_id, "soft": strategy.soft}
    return None


def label_constraint(options: dict[str, Any]) -> _labels.Constraint | None:
    """Where the node labels let a task or actor run, in wire form (see skate._labels): the
    `label_selector` option's entries are hard, and so are a NodeLabelSchedulingStrategy's hard
    expressions; its soft ones only make a node preferred. None when there is no constraint."""
    selector = options.get("label_selector")
    strategy = options.get("scheduling_strategy")
    if not selector and not isinstance(strategy, NodeLabelSchedulingStrategy):
        return None
    hard = list(_labels.parse_label_selector(selector))
    soft: list = []
    if isinstance(strategy, NodeLabelSchedulingStrategy):
        strategy_hard, soft_exprs = strategy._constraint()
        hard += strategy_hard
        soft += soft_exprs
    return _labels.constraint(hard, soft)


def resolve_placement_group(
    options: dict[str, Any], shapes: list[dict[str, float]]
) -> tuple[list[dict[str, float]], list | None]:
    """Where a task or actor of these options runs in a placement group.

    Returns its resource shapes rewritten to its bundle's resources (`CPU` ->
    `CPU_group_<i>_<pg>`, or `CPU_group_<pg>` for any bundle) and the group as TaskSpec carries
    it, `[id hex, bundle index, capture child tasks, bundles]`; outside a group, the shapes
    unchanged and None. The group comes from a PlacementGroupSchedulingStrategy, the legacy
    `placement_group=` options, or, for a call with no strategy of its own made inside a task
    that captures its children, from that task. A bad bundle index, or a demand no bundle it
    may use can hold, is a ValueError here, at submission.
    """
    strategy = options.get("scheduling_strategy")
    legacy = options.get("placement_group", "default")
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        group: Any = strategy.placement_group
        index = strategy.placement_group_bundle_index
        capture = bool(strategy.placement_group_capture_child_tasks)
    elif legacy not in (None, "default"):
        group = legacy
        index = options.get("placement_group_bundle_index", -1)
        capture = bool(options.get("placement_group_capture_child_tasks"))
    else:
        call = current_call()
        current = call.placement_group if call is not None else None
        if strategy is not None or legacy is None or current is None or not current[2]:
            return shapes, None
        pg_hex, _, _, bundles = current
        return [rewrite_demand(s, pg_hex, -1) for s in shapes], [pg_hex, -1, True, bundles]
    if group is None:
        return shapes, None
    pg_id = getattr(group, "id", None)
    if pg_id is None or not hasattr(group, "bundle_specs"):
        raise TypeError(f"placement_group must be a PlacementGroup, got {type(group).__name__} {group!r}")
    pg_hex = pg_id.hex()
    bundles = [dict(b) for b in group.bundle_specs]
    if isinstance(index, bool) or not isinstance(index, int) or not -1 <= index < len(bundles):
        raise ValueError(
            f"placement_group_bundle_index {index!r} is out of range: placement group {pg_hex} has "
            f"{len(bundles)} bundle(s), so the index must be -1 (any bundle) or 0..{len(bundles) - 1}"
        )
    usable = bundles if index == -1 else [bundles[index]]
    for shape in shapes:
        if not any(all(b.get(k, 0) >= v for k, v in shape.items() if v) for b in usable):
            where = "any bundle" if index == -1 else f"bundle {index} ({bundles[index]})"
            raise ValueError(
                f"the resource request {shape} cannot fit into {where} of placement group {pg_hex} "
                f"(bundles: {bundles}); ask for less or use a bundle that holds it"
            )
    return [rewrite_demand(s, pg_hex, index) for s in shapes], [pg_hex, index, capture, bundles]
