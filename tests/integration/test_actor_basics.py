"""Actors on a real cluster: classes, options, resources, method calls, handles, runtime context."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import skate
from skate.exceptions import RayTaskError
from skate.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tests.integration._actor_helpers import free
from tests.integration._helpers import wait_for


@skate.remote
class Counter:
    def __init__(self, start=0, *, step=1):
        self.value = start
        self.step = step

    def incr(self):
        self.value += self.step
        return self.value

    def get(self):
        return self.value

    def pid(self):
        return os.getpid()

    def add(self, a, b=0, *, c=0):
        return a + b + c

    def echo(self, *args, **kwargs):
        return args, kwargs

    @skate.method(num_returns=2)
    def two(self, x):
        return x, x * 10

    def pair(self, x):
        return x, x + 1

    def fail(self, msg):
        raise KeyError(msg)

    def record(self, x):
        self.value = x
        return x


@skate.remote
def slow_value(value, seconds):
    time.sleep(seconds)
    return value


# -- actor classes and options -------------------------------------------------------------


def test_remote_args_and_kwargs_reach_the_constructor(cluster):
    c = Counter.remote(10, step=5)
    assert skate.get(c.incr.remote(), timeout=30) == 15
    assert skate.get(c.incr.remote(), timeout=30) == 20
    assert isinstance(c, skate.ActorHandle)
    pid = skate.get(c.pid.remote(), timeout=30)
    assert pid != os.getpid()


def test_decorator_with_options_and_options_chaining(cluster):
    @skate.remote(num_cpus=0, max_restarts=1)
    class Small:
        def hello(self):
            return "hi"

    assert isinstance(Small, skate.ActorClass)
    a = Small.remote()
    assert skate.get(a.hello.remote(), timeout=30) == "hi"
    b = Small.options(num_cpus=0.5).options(max_task_retries=1, name=None).remote()
    assert skate.get(b.hello.remote(), timeout=30) == "hi"


def test_all_documented_options_are_accepted(cluster):
    node_id = skate.get_runtime_context().get_node_id()
    opts = dict(
        num_cpus=0,
        num_gpus=0,
        resources={"custom": 0.5},
        memory=1024 * 1024,
        name="basics-all-options",
        namespace="basics-ns",
        get_if_exists=False,
        lifetime="non_detached",
        max_restarts=2,
        max_task_retries=1,
        max_concurrency=3,
        concurrency_groups={"io": 2},
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
        runtime_env={"env_vars": {"SKATE_TEST_VAR": "1"}},
    )
    a = Counter.options(**opts).remote(1)
    assert skate.get(a.incr.remote(), timeout=30) == 2
    same = skate.get_actor("basics-all-options", namespace="basics-ns")
    assert same._actor_id == a._actor_id
    b = Counter.options(scheduling_strategy="SPREAD").remote(7)
    assert skate.get(b.get.remote(), timeout=30) == 7
    skate.kill(a)


def test_unknown_option_is_a_value_error_naming_it(cluster):
    with pytest.raises(ValueError, match="bogus_option"):
        Counter.options(bogus_option=1)
    with pytest.raises(ValueError, match="num_returns"):
        Counter.options(num_returns=2)  # a task option, not an actor one
    with pytest.raises(ValueError, match="max_retries"):
        Counter.options(max_retries=2)
    with pytest.raises(ValueError, match="not_a_method_option"):
        skate.remote(type("X", (), {"m": lambda self: 1})).options(not_a_method_option=3)
    h = Counter.remote()
    with pytest.raises(ValueError, match="max_calls"):
        h.incr.options(max_calls=1)


@pytest.mark.parametrize(
    "bad, exc",
    [
        ({"max_concurrency": 0}, ValueError),
        ({"lifetime": "forever"}, ValueError),
        ({"name": ""}, ValueError),
        ({"namespace": ""}, ValueError),
        ({"max_restarts": -2}, ValueError),
        ({"max_task_retries": -5}, ValueError),
        ({"num_cpus": -1}, ValueError),
        ({"concurrency_groups": {"io": 0}}, ValueError),
        ({"name": 5}, TypeError),
        ({"get_if_exists": "yes"}, TypeError),
        ({"max_concurrency": 1.5}, TypeError),
        ({"resources": {"CPU": 1}}, ValueError),
        ({"scheduling_strategy": "NOWHERE"}, ValueError),
        ({"runtime_env": {"env_vars": {"A": 1}}}, TypeError),
    ],
)
def test_bad_option_values_raise(cluster, bad, exc):
    with pytest.raises(exc):
        Counter.options(**bad)


def test_instantiating_or_calling_directly_is_a_type_error(cluster):
    with pytest.raises(TypeError, match="remote"):
        Counter()
    with pytest.raises(TypeError):
        Counter(1, step=2)
    c = Counter.remote()
    with pytest.raises(TypeError, match="remote"):
        c.incr()
    with pytest.raises(TypeError):
        c.add(1, 2)


def test_missing_method_is_an_attribute_error_at_the_call_site(cluster):
    c = Counter.remote()
    with pytest.raises(AttributeError, match="no_such_method"):
        c.no_such_method.remote()
    with pytest.raises(AttributeError):
        c.no_such_method  # noqa: B018
    assert not hasattr(c, "also_missing")
    # the actor is unaffected
    assert skate.get(c.incr.remote(), timeout=30) == 1


# -- resources ----------------------------------------------------------------------------


def test_custom_resources_are_held_and_released(cluster):
    assert wait_for(lambda: free("custom") == 2.0, timeout=10), skate.available_resources()
    a = Counter.options(num_cpus=0, resources={"custom": 1}).remote()
    assert skate.get(a.incr.remote(), timeout=30) == 1
    assert wait_for(lambda: free("custom") == 1.0, timeout=10), skate.available_resources()
    skate.kill(a)
    assert wait_for(lambda: free("custom") == 2.0, timeout=10), skate.available_resources()


# -- method calls -------------------------------------------------------------------------


def test_calls_run_in_submission_order(cluster):
    c = Counter.remote()
    refs = [c.incr.remote() for _ in range(100)]
    assert skate.get(refs, timeout=30) == list(range(1, 101))


def test_order_holds_when_an_earlier_call_waits_for_an_argument(cluster):
    c = Counter.remote()
    slow = slow_value.remote("from-slow-task", 1.0)
    first = c.record.remote(slow)  # waits for the still-running task
    second = c.get.remote()  # must run after `first`
    assert skate.get(second, timeout=30) == "from-slow-task"
    assert skate.get(first, timeout=30) == "from-slow-task"


def test_kwargs_and_object_ref_arguments(cluster):
    c = Counter.remote()
    assert skate.get(c.add.remote(1, b=2, c=3), timeout=30) == 6
    assert skate.get(c.add.remote(a=4), timeout=30) == 4
    x, y = skate.put(10), slow_value.remote(20, 0.5)
    assert skate.get(c.add.remote(x, b=y, c=skate.put(1)), timeout=30) == 31
    args, kwargs = skate.get(c.echo.remote(1, "two", key=[3]), timeout=30)
    assert args == (1, "two") and kwargs == {"key": [3]}
    # refs nested in containers stay refs
    args, _ = skate.get(c.echo.remote([x]), timeout=30)
    assert isinstance(args[0][0], skate.ObjectRef)
    assert skate.get(args[0][0], timeout=30) == 10


def test_num_returns_via_decorator_and_options(cluster):
    c = Counter.remote()
    a, b = c.two.remote(3)
    assert isinstance(a, skate.ObjectRef) and isinstance(b, skate.ObjectRef)
    assert skate.get([a, b], timeout=30) == [3, 30]
    p, q = c.pair.options(num_returns=2).remote(7)
    assert skate.get([p, q], timeout=30) == [7, 8]
    # the default still returns one ref holding the tuple
    single = c.pair.remote(1)
    assert isinstance(single, skate.ObjectRef)
    assert skate.get(single, timeout=30) == (1, 2)


def test_a_raising_method_gives_a_task_error_and_the_actor_lives(cluster):
    c = Counter.remote()
    assert skate.get(c.incr.remote(), timeout=30) == 1
    ref = c.fail.remote("missing-key-42")
    with pytest.raises(RayTaskError) as info:
        skate.get(ref, timeout=30)
    assert isinstance(info.value, KeyError)
    assert "missing-key-42" in str(info.value)
    assert "fail" in str(info.value)
    with pytest.raises(KeyError):
        skate.get(ref, timeout=30)
    # state is intact and the actor keeps serving calls
    assert skate.get(c.incr.remote(), timeout=30) == 2


# -- handles passed around ----------------------------------------------------------------


@skate.remote
def call_counter_from_task(handle, n):
    return skate.get([handle.incr.remote() for _ in range(n)], timeout=30)


@skate.remote
class Caller:
    def __init__(self, target):
        self.target = target

    def bump(self, n):
        return skate.get([self.target.incr.remote() for _ in range(n)], timeout=30)

    def bump_other(self, other):
        return skate.get(other.incr.remote(), timeout=30)


def test_handle_passed_to_a_task(cluster):
    c = Counter.remote()
    assert skate.get(call_counter_from_task.remote(c, 3), timeout=30) == [1, 2, 3]
    assert skate.get(c.get.remote(), timeout=30) == 3


def test_handle_passed_to_another_actor(cluster):
    c = Counter.remote()
    caller = Caller.remote(c)
    assert skate.get(caller.bump.remote(2), timeout=30) == [1, 2]
    other = Counter.remote(100)
    assert skate.get(caller.bump_other.remote(other), timeout=30) == 101
    assert skate.get(c.get.remote(), timeout=30) == 2


def test_handles_inside_containers(cluster):
    c = Counter.remote()
    holder = skate.put({"h": c})
    got = skate.get(holder, timeout=30)
    assert got["h"] == c
    assert skate.get(got["h"].incr.remote(), timeout=30) == 1
    assert skate.get(call_counter_from_task.remote(got["h"], 1), timeout=30) == [2]


# -- runtime context ----------------------------------------------------------------------


@skate.remote
class Introspect:
    def __init__(self):
        self.calls = 0

    def actor_id(self):
        return skate.get_runtime_context().get_actor_id()

    def reconstructed(self):
        return skate.get_runtime_context().was_current_actor_reconstructed

    def current_actor_id(self):
        return skate.get_runtime_context().current_actor._actor_id.hex()

    def poke_self(self):
        # A sync actor must not wait on a call to itself: hand the ref back instead.
        me = skate.get_runtime_context().current_actor
        return [me.count.remote()]

    def count(self):
        self.calls += 1
        return self.calls

    def call_other_with_self(self, other):
        me = skate.get_runtime_context().current_actor
        return skate.get(other.call_back.remote(me), timeout=30)

    def call_back(self, handle):
        return skate.get(handle.count.remote(), timeout=30)


@skate.remote
def task_actor_id():
    return skate.get_runtime_context().get_actor_id()


def test_actor_id_in_actor_task_and_driver(cluster):
    a = Introspect.remote()
    assert skate.get(a.actor_id.remote(), timeout=30) == a._actor_id.hex()
    assert skate.get_runtime_context().get_actor_id() is None
    assert skate.get(task_actor_id.remote(), timeout=30) is None
    assert skate.get(a.reconstructed.remote(), timeout=30) is False


def test_current_actor_handle_is_usable(cluster):
    a = Introspect.remote()
    assert skate.get(a.current_actor_id.remote(), timeout=30) == a._actor_id.hex()
    [inner] = skate.get(a.poke_self.remote(), timeout=30)
    assert isinstance(inner, skate.ObjectRef)
    assert skate.get(inner, timeout=30) == 1
    b = Introspect.remote()
    # a calls b with a handle to itself; b calls a back (a is busy, so use a threaded copy)
    c = Introspect.options(max_concurrency=2).remote()
    assert skate.get(c.call_other_with_self.remote(b), timeout=30) == 1
    assert skate.get(c.count.remote(), timeout=30) == 2


def test_current_actor_outside_an_actor_raises(cluster):
    with pytest.raises(RuntimeError):
        skate.get_runtime_context().current_actor  # noqa: B018


@skate.remote
class Named:
    def name(self):
        return skate.get_runtime_context().get_actor_name()

    def resources(self):
        return skate.get_runtime_context().get_assigned_resources()


def test_actor_name_in_runtime_context(cluster):
    # Ray: the name given with .options(name=...), or "" for an anonymous actor.
    named = Named.options(name="basics-ctx-name").remote()
    assert skate.get(named.name.remote(), timeout=30) == "basics-ctx-name"
    anonymous = Named.remote()
    assert skate.get(anonymous.name.remote(), timeout=30) == ""


def test_assigned_resources_in_actors(cluster):
    default = Named.remote()
    assert skate.get(default.resources.remote(), timeout=30) == {}
    one_cpu = Named.options(num_cpus=1, resources={"custom": 1}).remote()
    assert skate.get(one_cpu.resources.remote(), timeout=30) == {"CPU": 1.0, "custom": 1.0}


def test_get_if_exists_needs_a_name(cluster):
    with pytest.raises(ValueError, match="get_if_exists"):
        Counter.options(get_if_exists=True).remote()


# -- more method-call semantics ------------------------------------------------------------


@skate.remote
def broken_task(msg):
    raise ValueError(msg)


def test_a_failed_argument_fails_only_that_call(cluster):
    c = Counter.remote()
    bad = c.record.remote(broken_task.remote("upstream-broke"))
    good = c.incr.remote()
    with pytest.raises(ValueError, match="upstream-broke"):
        skate.get(bad, timeout=30)
    assert skate.get(good, timeout=30) == 1
    assert skate.get(c.incr.remote(), timeout=30) == 2


@skate.remote
class Arrays:
    def __init__(self, init=None):
        self.total = float(init.sum()) if init is not None else 0.0

    def total_of_init(self):
        return self.total

    def scale(self, arr, factor):
        return arr * factor, float(arr.sum())


def test_large_method_arguments_and_returns(cluster):
    a = Arrays.remote()
    arr = np.arange(400_000, dtype=np.float64)  # well above the inline limit: via the object store
    scaled, total = skate.get(a.scale.remote(arr, 2.0), timeout=30)
    assert np.array_equal(scaled, arr * 2.0)
    assert total == float(arr.sum())
    ref = skate.put(arr)
    scaled2, _ = skate.get(a.scale.remote(ref, 0.5), timeout=30)
    assert np.array_equal(scaled2, arr * 0.5)


def test_large_constructor_argument(cluster):
    # The arguments travel through the object store; nothing else holds them.
    a = Arrays.remote(np.ones(300_000))
    assert skate.get(a.total_of_init.remote(), timeout=30) == 300_000.0


def test_constructor_argument_ref_not_held_by_the_caller(cluster):
    b = Arrays.remote(skate.put(np.full(200_000, 2.0)))  # the driver drops its ref at once
    assert skate.get(b.total_of_init.remote(), timeout=30) == 400_000.0
    kept = skate.put(np.full(200_000, 3.0))
    c = Arrays.remote(kept)
    assert skate.get(c.total_of_init.remote(), timeout=30) == 600_000.0


def test_large_constructor_argument_survives_a_restart(cluster):
    a = Arrays.options(max_restarts=1).remote(np.ones(300_000))
    assert skate.get(a.total_of_init.remote(), timeout=30) == 300_000.0
    skate.kill(a, no_restart=False)
    assert wait_for(lambda: _total_or_none(a) == 300_000.0, timeout=15)


def _total_or_none(handle):
    try:
        return skate.get(handle.total_of_init.remote(), timeout=30)
    except skate.exceptions.RayActorError:
        return None


def test_calls_wait_for_a_slow_constructor(cluster):
    @skate.remote
    class Slow:
        def __init__(self, seconds):
            time.sleep(seconds)
            self.ready = True

        def is_ready(self):
            return self.ready

    s = Slow.remote(1.0)
    refs = [s.is_ready.remote() for _ in range(3)]
    assert skate.get(refs, timeout=30) == [True, True, True]


def test_inherited_and_num_returns_zero_methods(cluster, tmp_path):
    class Base:
        def base_method(self):
            return "from-base"

        def overridden(self):
            return "base"

    @skate.remote
    class Derived(Base):
        def overridden(self):
            return "derived"

        @skate.method(num_returns=0)
        def touch(self, path):
            with open(path, "w") as f:
                f.write("touched")

    d = Derived.remote()
    assert skate.get([d.base_method.remote(), d.overridden.remote()], timeout=30) == ["from-base", "derived"]
    marker = tmp_path / "touched"
    assert d.touch.remote(str(marker)) is None
    assert wait_for(marker.exists, timeout=30)


def test_an_actor_that_cannot_be_placed_yet_stays_pending(cluster):
    # Ray keeps an infeasible actor pending (a node that fits may join); it does not die.
    a = Counter.options(resources={"not-on-any-node": 1}).remote()
    ref = a.incr.remote()
    ready, not_ready = skate.wait([ref], timeout=1.5)
    assert ready == [] and not_ready == [ref]
    skate.kill(a)
    with pytest.raises(skate.exceptions.RayActorError):
        skate.get(ref, timeout=30)


class CustomActorError(Exception):
    def __init__(self, code):
        super().__init__(f"custom failure {code}")
        self.code = code


@skate.remote
class Flaky:
    def __init__(self):
        self.attempts = 0

    def custom(self, code):
        raise CustomActorError(code)

    def fail_twice(self):
        self.attempts += 1
        if self.attempts <= 2:
            raise ConnectionError(f"attempt {self.attempts}")
        return self.attempts


def test_user_exception_class_is_preserved(cluster):
    f = Flaky.remote()
    with pytest.raises(CustomActorError) as info:
        skate.get(f.custom.remote(17), timeout=30)
    assert isinstance(info.value, RayTaskError)
    assert "custom failure 17" in str(info.value)
    assert isinstance(info.value.cause, CustomActorError) and info.value.cause.code == 17


def test_retry_exceptions_on_actor_methods(cluster):
    f = Flaky.remote()
    ok = f.fail_twice.options(max_task_retries=2, retry_exceptions=True).remote()
    assert skate.get(ok, timeout=30) == 3
    g = Flaky.remote()
    once = g.fail_twice.options(max_task_retries=1, retry_exceptions=[ConnectionError]).remote()
    with pytest.raises(ConnectionError, match="attempt 2"):
        skate.get(once, timeout=30)
    h = Flaky.remote()
    never = h.fail_twice.options(max_task_retries=3, retry_exceptions=[KeyError]).remote()
    with pytest.raises(ConnectionError, match="attempt 1"):
        skate.get(never, timeout=30)


@skate.remote
def create_from_class(actor_class, start):
    c = actor_class.remote(start)
    return skate.get(c.incr.remote(), timeout=30)


def test_actor_class_passed_to_a_task(cluster):
    assert skate.get(create_from_class.remote(Counter, 41), timeout=30) == 42
    assert skate.get(create_from_class.remote(Counter.options(num_cpus=0), 1), timeout=30) == 2


def test_constructor_object_ref_arguments_are_resolved(cluster):
    start = slow_value.remote(100, 0.3)
    step = skate.put(10)
    c = Counter.remote(start, step=step)
    assert skate.get(c.incr.remote(), timeout=30) == 110
