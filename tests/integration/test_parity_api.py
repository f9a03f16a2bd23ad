"""Ray parity of the public API layer, on a real cluster."""

from __future__ import annotations

import inspect
import time

import pytest

import skate
from skate.exceptions import ActorDiedError
from skate.util import ActorPool


@skate.remote
class Account:
    RATE = 0.05

    def __init__(self, owner, balance=0):
        self.owner = owner
        self.balance = balance

    def deposit(self, amount, *, note=""):
        self.balance += amount
        return self.balance

    @staticmethod
    def interest(amount):
        return amount * Account.RATE

    @classmethod
    def kind(cls):
        return cls.__name__


@skate.remote
def call_with_bad_arguments(handle):
    """Inside a task, with a handle that came in pickled: a bad call fails at .remote()."""
    try:
        handle.deposit.remote(1, 2)
    except TypeError as exc:
        return f"TypeError: {exc}"
    return "sent"


# -- item 1: arguments are bound at .remote() ------------------------------------------


@pytest.mark.timeout(60)
def test_bad_constructor_arguments_fail_at_remote_and_register_nothing(cluster):
    with pytest.raises(TypeError, match="missing a required argument: 'owner'"):
        Account.options(name="parity-bad-ctor").remote()
    # Nothing was registered: the name is still free and get_actor finds no actor.
    with pytest.raises(ValueError):
        skate.get_actor("parity-bad-ctor")
    acct = Account.options(name="parity-bad-ctor").remote("ann", balance=5)
    assert skate.get(acct.deposit.remote(5), timeout=30) == 10
    skate.kill(acct)


@pytest.mark.timeout(60)
def test_bad_method_arguments_fail_at_remote_everywhere(cluster):
    acct = Account.options(name="parity-bad-method").remote("bob")
    with pytest.raises(TypeError, match="too many positional arguments"):
        acct.deposit.remote(1, 2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'memo'"):
        acct.deposit.remote(1, memo="x")
    # A handle that travelled to a task (pickled) checks there too.
    out = skate.get(call_with_bad_arguments.remote(acct), timeout=30)
    assert out.startswith("TypeError") and "too many positional arguments" in out
    # A handle from get_actor (its method table came through the GCS) checks as well.
    again = skate.get_actor("parity-bad-method")
    with pytest.raises(TypeError, match="missing a required argument: 'amount'"):
        again.deposit.remote()
    assert skate.get(again.deposit.remote(3, note="ok"), timeout=30) == 3
    skate.kill(acct)


# -- item 2: ActorClass behaves like the user's class ----------------------------------


@pytest.mark.timeout(60)
def test_class_members_reachable_from_the_driver_and_inside_the_actor(cluster):
    assert Account.RATE == 0.05
    assert Account.interest(100) == 5.0
    assert Account.kind() == "Account"
    acct = Account.remote("cy", 100)
    # Inside the actor the module-level name is the actor class: its members work there too.
    assert skate.get(acct.interest.remote(200), timeout=30) == 10.0
    assert skate.get(acct.kind.remote(), timeout=30) == "Account"
    skate.kill(acct)


# -- item 4: validation and error types ----------------------------------------------


@pytest.mark.timeout(60)
def test_a_taken_name_gives_rays_wording(cluster):
    first = Account.options(name="parity-dup").remote("dee")
    with pytest.raises(ValueError) as info:
        Account.options(name="parity-dup").remote("eve")
    msg = str(info.value)
    assert msg.startswith("The name parity-dup (namespace=")
    assert "is already taken. Please use a different name or get the existing actor using" in msg
    assert "get_actor('parity-dup'" in msg
    skate.kill(first)


@pytest.mark.timeout(60)
def test_validation_on_a_live_cluster(cluster):
    with pytest.raises(ValueError, match="only supported for actors"):
        skate.kill(skate.put(1))
    with pytest.raises(ValueError, match="namespace"):
        skate.get_actor("parity-nobody", namespace="")
    with pytest.raises(TypeError, match="namespace"):
        Account.options(namespace=3).remote("x")
    assert skate.wait([], num_returns=3) == ([], [])


# -- item 5: ActorPool -----------------------------------------------------------------


@skate.remote
class PoolWorker:
    def double(self, x):
        return 2 * x

    def pair(self, x):
        return x, -x

    def sleep_then(self, seconds, value):
        time.sleep(seconds)
        return value

    def die(self):
        import os

        os._exit(1)


@pytest.mark.timeout(60)
def test_pool_map_submits_at_once_and_returns_a_generator(cluster):
    pool = ActorPool([PoolWorker.remote() for _ in range(2)])
    called = []

    def fn(actor, v):
        called.append(v)
        return actor.double.remote(v)

    results = pool.map(fn, range(5))
    assert inspect.isgenerator(results)
    assert called == [0, 1]  # one per actor before anything is read; the rest as actors free up
    assert list(results) == [0, 2, 4, 6, 8]
    assert called == [0, 1, 2, 3, 4]
    unordered = pool.map_unordered(fn, [10, 11])
    assert inspect.isgenerator(unordered) and called[-2:] == [10, 11]
    assert sorted(unordered) == [20, 22]


@pytest.mark.timeout(60)
def test_pool_map_drops_earlier_unread_work(cluster):
    pool = ActorPool([PoolWorker.remote()])
    pool.submit(lambda a, v: a.sleep_then.remote(*v), (5.0, "old"))
    start = time.monotonic()
    assert list(pool.map(lambda a, v: a.double.remote(v), [1, 2])) == [2, 4]
    assert not pool.has_next()
    assert time.monotonic() - start < 30


@pytest.mark.timeout(60)
def test_pool_functions_returning_several_refs(cluster):
    pool = ActorPool([PoolWorker.remote() for _ in range(2)])
    pair = lambda a, v: a.pair.options(num_returns=2).remote(v)  # noqa: E731
    for v in (1, 2, 3):
        pool.submit(pair, v)
    assert pool.get_next(timeout=30) == [1, -1]
    assert pool.get_next() == [2, -2]
    assert pool.get_next_unordered(timeout=30) == [3, -3]
    assert list(pool.map(pair, [4, 5])) == [[4, -4], [5, -5]]
    assert sorted(pool.map_unordered(pair, [6, 7])) == [[6, -6], [7, -7]]


@pytest.mark.timeout(60)
def test_pool_timeouts_that_ignore_the_task(cluster):
    pool = ActorPool([PoolWorker.remote()])
    pool.submit(lambda a, v: a.sleep_then.remote(*v), (3.0, "late"))
    pool.submit(lambda a, v: a.sleep_then.remote(*v), (0.0, "next"))
    with pytest.raises(TimeoutError, match="Timed out waiting for result"):
        pool.get_next(timeout=0.1)
    assert pool.has_next()  # a plain timeout leaves the task in place
    with pytest.raises(TimeoutError, match="has been ignored"):
        pool.get_next(timeout=0.1, ignore_if_timedout=True)
    assert pool.get_next(timeout=30) == "next"  # ran after the ignored one, on the same actor
    assert not pool.has_next()
    pool.submit(lambda a, v: a.sleep_then.remote(*v), (3.0, "late"))
    with pytest.raises(TimeoutError, match="has been ignored"):
        pool.get_next_unordered(timeout=0.1, ignore_if_timedout=True)
    assert not pool.has_next() and pool.has_free()


@pytest.mark.timeout(60)
def test_pool_has_next_counts_work_in_flight_only(cluster):
    pool = ActorPool([])
    pool.submit(lambda a, v: a.double.remote(v), 21)
    assert not pool.has_next()  # as Ray: queued, not in flight, until an actor joins
    pool.push(PoolWorker.remote())
    assert pool.has_next()
    assert pool.get_next(timeout=30) == 42


@pytest.mark.timeout(60)
def test_pool_a_dead_actor_leaves_the_pool(cluster):
    doomed, healthy = PoolWorker.remote(), PoolWorker.remote()
    pool = ActorPool([healthy, doomed])  # the last one is taken first
    pool.submit(lambda a, v: a.die.remote(), None)
    with pytest.raises(ActorDiedError):
        pool.get_next(timeout=30)
    assert pool.pop_idle() == healthy
    assert pool.pop_idle() is None


# -- item 6: error details -------------------------------------------------------------


class LockedError(Exception):
    """Cannot be pickled: it holds a lock."""

    def __init__(self, msg):
        super().__init__(msg)
        import threading

        self.lock = threading.Lock()


class SealedError(Exception):
    def __init_subclass__(cls, **kwargs):
        raise TypeError("SealedError takes no subclasses")


@skate.remote(max_retries=0)
def raise_locked():
    raise LockedError("held")


@skate.remote(max_retries=0)
def raise_sealed():
    raise SealedError("sealed")


@pytest.mark.timeout(60)
def test_unserializable_task_exception_names_its_class(cluster):
    from skate.exceptions import RayError, RayTaskError

    with pytest.raises(RayTaskError) as info:
        skate.get(raise_locked.remote(), timeout=30)
    err = info.value
    assert type(err.cause) is RayError
    assert "isn't serializable" in str(err.cause) and "LockedError" in str(err.cause)
    assert "held" in str(err)  # the remote traceback is still there


@pytest.mark.timeout(60)
def test_exception_class_refusing_subclasses_comes_as_task_error_with_a_warning(cluster, caplog):
    from skate.exceptions import RayTaskError

    with caplog.at_level("WARNING", logger="skate.exceptions"):
        with pytest.raises(RayTaskError) as info:
            skate.get(raise_sealed.remote(), timeout=30)
    assert isinstance(info.value.cause, SealedError) and not isinstance(info.value, SealedError)
    assert "can't be subclassed" in caplog.text and "ray_task_error.cause" in caplog.text


# -- item 7: auto-init where Ray auto-inits --------------------------------------------


@pytest.mark.timeout(90)
def test_put_before_init_starts_a_local_cluster(fresh, monkeypatch):
    for var in ("SKATE_ENABLE_AUTO_CONNECT", "RAY_ENABLE_AUTO_CONNECT"):
        monkeypatch.delenv(var, raising=False)
    assert not skate.is_initialized()
    ref = skate.put("hello")
    assert skate.is_initialized()
    assert skate.get(ref, timeout=30) == "hello"
    skate.shutdown()
    assert skate.get_gpu_ids() == [] and skate.is_initialized()  # so does get_gpu_ids
    skate.shutdown()
