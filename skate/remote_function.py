"""RemoteFunction: what `@skate.remote` makes of a function."""

from __future__ import annotations

import functools
import inspect
from typing import Any

from skate._auto_init import current_or_init
from skate._options import (
    TASK_DEFAULTS,
    TASK_OPTIONS,
    generator_call,
    label_constraint,
    resolve_placement_group,
    resource_shape,
    validate_options,
    wire_strategy,
)
from skate._signature import ArgSpec
from skate.core_worker import context
from skate.core_worker.call_context import current_call
from skate.core_worker.functions import FunctionManager
from skate.core_worker.task_events import new_events_key


class RemoteFunction:
    """A function that runs as a task: call `.remote(...)` to get ObjectRefs back."""

    def __init__(self, function: Any, options: dict[str, Any]):
        if not callable(function):
            raise TypeError(f"skate.remote expects a function or a class, got {function!r}")
        if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
            raise ValueError(
                "'async def' should not be used for remote tasks: a task's worker runs no event "
                f"loop to await '{getattr(function, '__name__', function)}'. Wrap it in a plain "
                "function that calls `asyncio.run(...)`, or make it a method of an actor, where "
                "async methods are supported."
            )
        self._function = function
        self._options = {**TASK_DEFAULTS, **validate_options(options, TASK_OPTIONS, "remote functions")}
        if inspect.isgeneratorfunction(function) and "num_returns" not in options:
            self._options["num_returns"] = "streaming"  # as Ray: a generator streams its items
        self._name = getattr(function, "__name__", "function")
        self._pickled: tuple[bytes, bytes] | None = None
        self._shape_cache: dict | None = None
        # (worker id, key): this function's `TaskSpec.events_key` with its own options, in
        # that core's session (a new session, a new key; the id, not the core, is kept)
        self._events_key: tuple | None = None
        # The signature is read at the first call that needs it; until then (lo > hi) every
        # call takes the slow path, which reads it.
        self._argspec: ArgSpec | None = None
        self._arg_lo, self._arg_hi = 1, 0
        functools.update_wrapper(self, function, updated=())

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"Remote functions cannot be called directly. Instead of running '{self._name}()', "
            f"try '{self._name}.remote()'."
        )

    def __reduce__(self):
        return (
            RemoteFunction,
            (self._function, {k: v for k, v in self._options.items() if k in TASK_OPTIONS}),
        )

    def options(self, **options: Any) -> _BoundOptions:
        """A copy of this function with some options changed, for one or more calls."""
        merged = {**self._options, **validate_options(options, TASK_OPTIONS, "remote functions")}
        return _BoundOptions(self, merged)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function as a task with these arguments; returns its ObjectRef(s)."""
        return self._submit(args, kwargs, self._options)

    def _remote(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        """Ray's form: `f._remote(args=[...], kwargs={...}, num_cpus=2, ...)`."""
        merged = {**self._options, **validate_options(options, TASK_OPTIONS, "remote functions")}
        return self._submit(tuple(args or ()), dict(kwargs or {}), merged)

    def _check_args(self, args: tuple, kwargs: dict) -> None:
        """The slow path of the argument check: read the signature once, then bind."""
        spec = self._argspec
        if spec is None:
            spec = self._argspec = ArgSpec.of(self._function, self._name)
            self._arg_lo, self._arg_hi = spec.lo, spec.hi
        spec.bind(args, kwargs)

    def _submit(self, args: tuple, kwargs: dict, options: dict) -> Any:
        if kwargs or not self._arg_lo <= len(args) <= self._arg_hi:
            self._check_args(args, kwargs)
        core = context.current
        if core is None:
            core = current_or_init()
        if self._pickled is None:
            self._pickled = FunctionManager.pickle(self._function)
        key, data = self._pickled
        core.functions.export(key, data)
        if options is self._options and self._shape_cache is not None:
            shape = self._shape_cache
        else:
            shape = resource_shape(options)
            if options is self._options:
                self._shape_cache = shape
        group = None
        if (
            options["scheduling_strategy"] is not None
            or options.get("placement_group") is not None
            or _in_group()
        ):
            (shape,), group = resolve_placement_group(options, [shape])
        events_key = None
        if group is None and options is self._options:  # (name and shape are its own)
            ek = self._events_key
            if ek is None or ek[0] is not core.worker_id:
                ek = self._events_key = (core.worker_id, new_events_key())
            events_key = ek[1]
        num_returns = options["num_returns"]
        num_returns, extra = generator_call(num_returns, options, core)
        refs = core.submitter.submit(
            key,
            options.get("name") or self._name,
            args,
            kwargs,
            num_returns=num_returns,
            resources=shape,
            max_retries=options["max_retries"],
            retry_exceptions=options["retry_exceptions"],
            max_calls=options["max_calls"],
            runtime_env=options.get("runtime_env"),
            strategy=wire_strategy(options.get("scheduling_strategy")),
            placement_group=group,
            labels=label_constraint(options),
            task_events=options.get("enable_task_events") is not False,
            events_key=events_key,
            **extra,
        )
        if extra:  # a generator call: its items come through the stream
            return core.streams.consumer(refs[0])
        if num_returns == 1:
            return refs[0]
        if num_returns == 0:
            return None
        return refs


def _in_group() -> bool:
    """Is this call made inside a task or actor placed in a placement group?"""
    call = current_call()
    return call is not None and call.placement_group is not None


class _BoundOptions:
    """The result of `.options(...)`: call `.remote(...)` on it."""

    def __init__(self, fn: RemoteFunction, options: dict[str, Any]):
        self._fn = fn
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function as a task with these arguments; returns its ObjectRef(s)."""
        return self._fn._submit(args, kwargs, self._options)

    def options(self, **options: Any) -> _BoundOptions:
        """A copy with some options changed, for one or more `.remote()` calls."""
        merged = {**self._options, **validate_options(options, TASK_OPTIONS, "remote functions")}
        return _BoundOptions(self._fn, merged)
