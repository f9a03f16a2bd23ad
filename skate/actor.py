"""Actors: ActorClass (what `@skate.remote` makes of a class), ActorHandle and ActorMethod."""

from __future__ import annotations

import inspect
from typing import Any

from skate._auto_init import current_or_init
from skate._options import ACTOR_DEFAULTS, ACTOR_OPTIONS, METHOD_OPTIONS, generator_call, validate_options
from skate._signature import ArgSpec, init_spec, method_wire
from skate.exceptions import ActorClassInheritanceException

__all__ = ["ActorClass", "ActorClassInheritanceException", "ActorHandle", "ActorMethod", "exit_actor"]
from skate.core_worker import context
from skate.core_worker.functions import FunctionManager


def _method_table(cls: type) -> dict[str, dict]:
    """Public methods of an actor class with their @method options and signatures (in a
    form that pickles and goes through msgpack, so every handle can check arguments)."""
    table = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("__") and name not in ("__call__",):
            continue
        if not (inspect.isfunction(member) or inspect.ismethod(member)):
            continue
        opts = dict(getattr(member, "__skate_method_options__", {}))
        opts["is_async"] = inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member)
        if inspect.isgeneratorfunction(member) or inspect.isasyncgenfunction(member):
            opts.setdefault("num_returns", "streaming")  # as Ray: a generator method streams its items
        opts["sig"] = method_wire(cls, name, member)
        table[name] = opts
    return table


class ActorClass:
    """A class whose instances live in their own worker process: `Cls.remote(...)` makes one.

    Otherwise it reads like the user's class: class attributes, staticmethods and
    classmethods are reachable through it (`Cls.LIMIT`, `Cls.helper()`), also inside the actor,
    where the module-level name is this object too.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> ActorClass:
        # `class B(SomeActorClass)` makes Python call ActorClass("B", bases, namespace).
        if len(args) == 3 and isinstance(args[0], str) and isinstance(args[1], tuple):
            for base in args[1]:
                if isinstance(base, ActorClass):
                    raise ActorClassInheritanceException(
                        f"Attempted to define subclass '{args[0]}' of actor class '{base._name}'. "
                        "Inheriting from actor classes is not currently supported. Inherit from a "
                        "plain base class instead and make the derived class an actor class "
                        "(with @remote)."
                    )
        return super().__new__(cls)

    def __init__(self, cls: type, options: dict[str, Any]):
        self._cls = cls
        self._options = {**ACTOR_DEFAULTS, **validate_options(options, ACTOR_OPTIONS, "actors")}
        self._name = cls.__name__
        self._methods = _method_table(cls)
        self._init_spec = init_spec(cls, f"{cls.__name__}.__init__")
        self._pickled: tuple[bytes, bytes] | None = None
        self.__doc__ = cls.__doc__
        self.__name__ = cls.__name__
        self.__qualname__ = getattr(cls, "__qualname__", cls.__name__)
        self.__module__ = cls.__module__

    def __call__(self, *args: Any, **kwargs: Any):
        raise TypeError(
            f"Actors cannot be instantiated directly. Instead of '{self._name}()', "
            f"use '{self._name}.remote()'."
        )

    def __getattr__(self, name: str) -> Any:
        # Only reached for names ActorClass itself lacks: the user's class attributes.
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        cls = self.__dict__.get("_cls")
        if cls is None:
            raise AttributeError(name)
        try:
            return getattr(cls, name)
        except AttributeError:
            raise AttributeError(f"actor class '{cls.__name__}' has no attribute '{name}'") from None

    def __reduce__(self):
        return (ActorClass, (self._cls, {k: v for k, v in self._options.items() if k in ACTOR_OPTIONS}))

    def options(self, **options: Any) -> _BoundActorOptions:
        """A copy with some options changed, for one or more `.remote()` calls."""
        merged = {**self._options, **validate_options(options, ACTOR_OPTIONS, "actors")}
        return _BoundActorOptions(self, merged)

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        """Create an actor (or call the method) with these arguments; see ActorClass.remote."""
        return self._create(args, kwargs, self._options)

    def _remote(self, args: Any = None, kwargs: Any = None, **options: Any) -> ActorHandle:
        """Ray's form: `Cls._remote(args=[...], kwargs={...}, name="a", ...)`."""
        merged = {**self._options, **validate_options(options, ACTOR_OPTIONS, "actors")}
        return self._create(tuple(args or ()), dict(kwargs or {}), merged)

    def _create(self, args: tuple, kwargs: dict, options: dict) -> ActorHandle:
        self._init_spec.check(args, kwargs)
        if options.get("get_if_exists") and not options.get("name"):
            raise ValueError("The actor name must be specified to use `get_if_exists`.")
        core = context.current
        if core is None:
            core = current_or_init()
        if self._pickled is None:
            self._pickled = FunctionManager.pickle(self._cls)
        key, data = self._pickled
        core.functions.export(key, data)
        info = core.actor_submitter.create(self._name, self._methods, key, args, kwargs, options)
        if info["created"]:
            return ActorHandle(info["actor_id"], self._name, self._methods, info["public"], None, core)
        return _handle_from_info(info, core)


class _BoundActorOptions:
    def __init__(self, cls: ActorClass, options: dict):
        self._cls = cls
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        """Create an actor (or call the method) with these arguments; see ActorClass.remote."""
        return self._cls._create(args, kwargs, self._options)

    def options(self, **options: Any) -> _BoundActorOptions:
        """A copy with some options changed, for one or more `.remote()` calls."""
        return _BoundActorOptions(
            self._cls, {**self._options, **validate_options(options, ACTOR_OPTIONS, "actors")}
        )


class ActorHandle:
    """A reference to an actor; picklable, so it can be passed to tasks and other actors."""

    def __init__(
        self,
        actor_id: bytes,
        class_name: str,
        methods: dict[str, dict],
        options: dict,
        owner: tuple | None = None,
        _core: Any = None,
    ):
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods
        self._actor_options = options
        self._owner = owner
        self._specs: dict[str, ArgSpec] = {}  # method -> its ArgSpec, read from _methods when first called
        core = _core if _core is not None else context.current
        self._core = core
        if core is not None:  # handles are counted like refs: see core_worker.ownership
            core.refs.add_local(actor_id, owner)

    def __del__(self) -> None:
        core = self._core
        if core is not None and not core.stopped:
            try:
                core.refs.remove_local(self._actor_id)
            except Exception:
                pass

    def __getattr__(self, name: str) -> ActorMethod:
        methods = self.__dict__.get("_methods")
        if name in ("__ray_ready__", "__ray_terminate__") and methods is not None:
            return ActorMethod(self, name, {}, ArgSpec(f"{self._class_name}.{name}", []))
        if methods is None or name.startswith("__"):
            raise AttributeError(name)
        if name not in methods:
            raise AttributeError(f"'{self._class_name}' actor has no method '{name}'")
        spec = self._specs.get(name)
        if spec is None:
            spec = self._specs[name] = ArgSpec(f"{self._class_name}.{name}", methods[name].get("sig"))
        return ActorMethod(self, name, methods[name], spec)

    def __reduce__(self):
        from skate._serialization import contained_refs_sink

        sink = contained_refs_sink()
        if sink is not None:
            sink.append(self)
        owner = self._owner if self._owner is not None else self._core.owner_address
        return (
            _rebuild_handle,
            (self._actor_id, self._class_name, self._methods, self._actor_options, owner),
        )

    def __repr__(self) -> str:
        return f"Actor({self._class_name}, {self._actor_id.hex()})"

    def __hash__(self) -> int:
        return hash(self._actor_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    @property
    def _ray_actor_id(self) -> bytes:
        return self._actor_id


def _handle_from_info(info: dict, core: Any) -> ActorHandle:
    """A handle to an existing actor described by the GCS; registers as its borrower if needed."""
    owner = tuple(info["owner"]) if info.get("owner") else None
    if owner == core.owner_address:
        owner = None
    handle = ActorHandle(info["actor_id"], info["class_name"], info["methods"], info, owner, core)
    if owner is not None:
        core.ownership.register_borrows()
    return handle


def _rebuild_handle(actor_id, class_name, methods, options, owner) -> ActorHandle:
    core = context.current
    owner = tuple(owner) if owner is not None else None
    if core is not None and owner == core.owner_address:
        owner = None
    return ActorHandle(actor_id, class_name, methods, options, owner, core)


class ActorMethod:
    """A method of an actor: `.remote(...)` queues a call, `.options(...)` changes num_returns."""

    def __init__(self, handle: ActorHandle, name: str, options: dict, spec: ArgSpec):
        self._handle = handle
        self._name = name
        self._options = options
        self._spec = spec

    def __call__(self, *args: Any, **kwargs: Any):
        raise TypeError(
            f"Actor methods cannot be called directly. Instead of '{self._name}()', "
            f"try '{self._name}.remote()'."
        )

    def options(self, **options: Any) -> ActorMethod:
        """A copy with some options changed, for one or more `.remote()` calls."""
        merged = {**self._options, **validate_options(options, METHOD_OPTIONS, "actor methods")}
        return ActorMethod(self._handle, self._name, merged, self._spec)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Create an actor (or call the method) with these arguments; see ActorClass.remote."""
        spec = self._spec
        if kwargs or not spec.lo <= len(args) <= spec.hi:
            spec.bind(args, kwargs)
        handle = self._handle
        core = handle._core or context.current
        options = self._options
        num_returns = options.get("num_returns", 1)
        retries = options.get("max_task_retries")
        if retries is None:
            retries = handle._actor_options.get("max_task_retries", 0)
        num_returns, extra = generator_call(num_returns, options, core)
        events = options.get("enable_task_events")  # the method's (call's), else its actor's
        if events is None:
            events = handle._actor_options.get("enable_task_events")
        refs = core.actor_submitter.submit(
            handle._actor_id,
            handle._class_name,
            handle,
            self._name,
            args,
            kwargs,
            num_returns,
            retries,
            options.get("retry_exceptions", False),
            options.get("concurrency_group"),
            task_events=events is not False,
            **extra,
        )
        if extra:  # a generator call: its items come through the stream
            return core.streams.consumer(refs[0])
        if num_returns == 1:
            return refs[0]
        if num_returns == 0:
            return None
        return refs


def exit_actor() -> None:
    """End the current actor once this call returns; it is not restarted."""
    from skate.core_worker.executor import ActorExit

    core = context.current
    if core is None or core.actor_id is None:
        raise TypeError("exit_actor() can only be called inside an actor.")
    raise ActorExit(0)
