"""Actors on a real cluster: classes, options, resources, method calls, handles, runtime context."""

from __future__ import annotations

import os
import time

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
