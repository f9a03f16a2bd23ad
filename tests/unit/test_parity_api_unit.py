"""Ray parity of the public API layer, checked without a cluster.

A stand-in core worker records what `.remote()` would submit, so a test can tell a call
refused at the call site from one sent on.
"""

from __future__ import annotations

import pickle
import types

import cloudpickle
import msgpack
import pytest

import skate
from skate._signature import ArgSpec
from skate.actor import ActorHandle
from skate.core_worker import context


class _Recorder:
    """What the API layer hands the core worker: submitted tasks, created actors, method calls."""

    def __init__(self):
        self.calls: list[tuple] = []

    def submit(self, *args, **kwargs):
        self.calls.append(("submit", args, kwargs))
        return [None] * kwargs.get("num_returns", 1)


class _Actors:
    def __init__(self, recorder: _Recorder):
        self.recorder = recorder

    def create(self, class_name, methods, key, args, kwargs, options):
        self.recorder.calls.append(("create", args, kwargs))
        return {"actor_id": b"a" * 16, "public": {}, "created": True}

    def submit(self, actor_id, class_name, handle, method, args, kwargs, num_returns, *rest, **options):
        self.recorder.calls.append(("method", method, args, kwargs))
        return [None] * num_returns


class _Refs:
    def add_local(self, object_id, owner):
        pass

    def remove_local(self, object_id):
        pass


@pytest.fixture
def core(monkeypatch):
    """A stand-in core worker installed as the current one; yields the list of calls."""
    recorder = _Recorder()
    fake = types.SimpleNamespace(
        submitter=recorder,
        actor_submitter=_Actors(recorder),
        refs=_Refs(),
        functions=types.SimpleNamespace(export=lambda key, data: None),
        stopped=True,
        owner_address=("w", "unix://nowhere"),
        worker_id="w",
    )
    monkeypatch.setattr(context, "current", fake)
    yield recorder.calls


# -- item 1: arguments are bound at .remote() ------------------------------------------


@skate.remote
def two(a, b):
    return a + b


@skate.remote
def mixed(a, b=1, *rest, c, d=2, **extra):
    return a


@skate.remote
class Box:
    def __init__(self, size, *, label=""):
        self.size = size

    def put(self, item, count=1):
        return item

    @staticmethod
    def static(x):
        return x

    @classmethod
    def klass(cls, y):
        return y


@skate.remote
class NoInit:
    def ping(self):
        return 1


def _handle(actor_class) -> ActorHandle:
    return ActorHandle(b"h" * 16, actor_class._name, actor_class._methods, {}, None, None)


@pytest.mark.parametrize(
    "args, kwargs, words",
    [
        ((1,), {}, "missing a required argument: 'b'"),
        ((1, 2, 3), {}, "too many positional arguments"),
        ((1, 2), {"z": 3}, "unexpected keyword argument 'z'"),
        ((1,), {"a": 2}, "multiple values for argument 'a'"),
    ],
)
def test_task_arguments_are_checked_at_remote(core, args, kwargs, words):
    with pytest.raises(TypeError, match=words) as info:
        two.remote(*args, **kwargs)
    assert "two()" in str(info.value)
    with pytest.raises(TypeError, match=words):
        two.options(num_cpus=2).remote(*args, **kwargs)
    assert core == []


def test_fitting_task_calls_are_sent(core):
    two.remote(1, 2)
    two.remote(1, b=2)
    two.remote(a=1, b=2)
    mixed.remote(1, c=3)
    mixed.remote(1, 2, 3, 4, c=3, d=4, e=5)
    assert len(core) == 5
    with pytest.raises(TypeError, match="missing a required argument: 'c'"):
        mixed.remote(1, 2, 3)
    assert len(core) == 5


def test_actor_constructor_arguments_are_checked_at_remote(core):
    with pytest.raises(TypeError, match="missing a required argument: 'size'"):
        Box.remote()
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        Box.options(name="x").remote(1, colour="red")
    with pytest.raises(TypeError, match="too many positional arguments"):
        NoInit.remote(1)
    assert core == []
    Box.remote(3, label="small")
    NoInit.remote()
    assert [c[0] for c in core] == ["create", "create"]


def test_actor_method_arguments_are_checked_at_remote(core):
    handle = _handle(Box)
    with pytest.raises(TypeError, match="missing a required argument: 'item'"):
        handle.put.remote()
    with pytest.raises(TypeError, match="too many positional arguments"):
        handle.put.options(num_returns=1).remote(1, 2, 3)
    with pytest.raises(TypeError, match="too many positional arguments"):
        handle.static.remote(1, 2)
    with pytest.raises(TypeError, match="missing a required argument: 'y'"):
        handle.klass.remote()
    assert core == []
    handle.put.remote("x")
    handle.static.remote(1)
    handle.klass.remote(y=2)
    assert [c[1] for c in core] == ["put", "static", "klass"]


def test_handles_rebuilt_from_pickle_or_msgpack_still_check(core):
    handle = _handle(Box)
    for copy in (
        pickle.loads(pickle.dumps(handle)),
        # as get_actor builds it: the method table came back from the GCS as msgpack
        ActorHandle(b"h" * 16, "Box", msgpack.unpackb(msgpack.packb(Box._methods)), {}, None, None),
    ):
        with pytest.raises(TypeError, match="missing a required argument: 'item'"):
            copy.put.remote()
        copy.put.remote(1)
    assert len(core) == 2


def test_argspec_fast_path_bounds():
    def f(a, b, c=1):
        pass

    def g(*args):
        pass

    def h(a, *, k):
        pass

    assert (ArgSpec.of(f, "f").lo, ArgSpec.of(f, "f").hi) == (2, 3)
    assert ArgSpec.of(g, "g").fits((1,) * 100, {})
    assert not ArgSpec.of(h, "h").fits((1,), {})  # a required keyword: never by position alone
    unknown = ArgSpec("x", None)
    unknown.check((1, 2, 3), {"any": 1})  # an unknown signature accepts anything


def test_keyword_call_shapes_that_bound_are_remembered_but_bad_ones_still_fail():
    def g(a, b=2, *, c=3):
        pass

    spec = ArgSpec.of(g, "g")
    for _ in range(3):
        spec.check((1,), {"c": 4})
    with pytest.raises(TypeError, match="missing a required argument: 'a'"):
        spec.check((), {"c": 4})
    with pytest.raises(TypeError, match="multiple values for argument 'b'"):
        spec.check((1, 2), {"b": 4})


# -- item 2: ActorClass behaves like the user's class ----------------------------------


@skate.remote
class Config:
    LIMIT = 7
    names = ("a", "b")

    def __init__(self, x=0):
        self.x = x

    @staticmethod
    def double(v):
        return 2 * v

    @classmethod
    def make_name(cls, suffix):
        return f"{cls.__name__}-{suffix}"

    def method(self):
        return self.x


def test_class_attributes_static_and_class_methods_through_the_actor_class():
    assert Config.LIMIT == 7
    assert Config.names == ("a", "b")
    assert Config.double(4) == 8
    assert Config.make_name("x") == "Config-x"
    with pytest.raises(AttributeError, match="nothing_here"):
        Config.nothing_here  # noqa: B018
    # The actor's own API stays what it was.
    assert callable(Config.remote) and callable(Config.options)
    # Copies (pickled to a task) delegate too.
    copy = cloudpickle.loads(cloudpickle.dumps(Config))
    assert copy.LIMIT == 7 and copy.double(1) == 2


def test_subclassing_an_actor_class_is_a_clear_type_error():
    from skate.actor import ActorClassInheritanceException

    with pytest.raises(TypeError, match="Inheriting from actor classes is not currently supported") as info:

        class Derived(Config):  # type: ignore[misc, valid-type]
            pass

    assert isinstance(info.value, ActorClassInheritanceException)
    assert "'Derived'" in str(info.value) and "'Config'" in str(info.value)


def test_underscore_remote_takes_rays_form(core):
    handle = Config._remote(args=[1], kwargs={}, name="cfg", max_restarts=1)
    assert isinstance(handle, ActorHandle)
    Config._remote()
    Config._remote(kwargs={"x": 3})
    assert [c[1:] for c in core] == [((1,), {}), ((), {}), ((), {"x": 3})]
    with pytest.raises(ValueError, match="Invalid option keyword 'bogus'"):
        Config._remote(args=[1], bogus=True)
    with pytest.raises(TypeError, match="too many positional arguments"):
        Config._remote(args=[1, 2])
    ref = two._remote(args=(1, 2), num_returns=1, max_retries=0)
    assert ref is None and core[-1][0] == "submit" and core[-1][2]["max_retries"] == 0


# -- item 3: decorators ------------------------------------------------------------------


def test_remote_with_empty_parentheses_is_an_error():
    with pytest.raises((TypeError, AssertionError), match="no arguments and no parentheses") as info:

        @skate.remote()
        def f():
            return 1

    # Ray raises AssertionError here; Skate's error is both that and a TypeError.
    assert isinstance(info.value, AssertionError) and isinstance(info.value, TypeError)
    assert "num_cpus" in str(info.value)  # it lists the valid options
    with pytest.raises(AssertionError, match="no arguments and no parentheses"):
        skate.remote(lambda: 1, num_cpus=1)
    with pytest.raises(AssertionError, match="no arguments and no parentheses"):
        skate.remote(5)
    assert callable(skate.remote(num_cpus=1))  # keyword options alone are fine


def test_remote_on_an_async_function_is_a_value_error():
    async def fetch():
        return 1

    with pytest.raises(ValueError, match="'async def' should not be used for remote tasks"):
        skate.remote(fetch)
    with pytest.raises(ValueError, match="'async def' should not be used for remote tasks"):
        skate.remote(num_cpus=1)(fetch)

    async def stream():
        yield 1

    with pytest.raises(ValueError, match="'async def' should not be used for remote tasks"):
        skate.remote(stream)

    @skate.remote
    class Fine:  # async methods in actors stay allowed
        async def m(self):
            return 1

    assert Fine._methods["m"]["is_async"]


# -- item 4: validation and error types ----------------------------------------------


def test_kill_of_a_non_handle_is_a_value_error():
    for not_a_handle in (5, "actor", None, Config):
        with pytest.raises(ValueError, match="only supported for actors"):
            skate.kill(not_a_handle)


@pytest.mark.parametrize("bad, exc", [(1, TypeError), (b"ns", TypeError), ("", ValueError)])
def test_namespace_is_checked_everywhere(bad, exc):
    with pytest.raises(exc, match="namespace"):
        skate.init(namespace=bad)
    assert not skate.is_initialized()
    with pytest.raises(exc, match="namespace"):
        Config.options(namespace=bad)
    with pytest.raises(exc, match="namespace"):
        Config.options(name="n").options(namespace=bad)
    with pytest.raises(exc, match="namespace"):
        skate.get_actor("someone", namespace=bad)


def test_wait_on_an_empty_list_returns_two_empty_lists(core):
    assert skate.wait([]) == ([], [])
    assert skate.wait([], num_returns=1, timeout=0) == ([], [])
    with pytest.raises(TypeError):
        skate.wait(None)


# -- item 6: error details -------------------------------------------------------------


class _Unpicklable(Exception):
    def __init__(self, msg):
        super().__init__(msg)
        self.lock = __import__("threading").Lock()


class _NoRebuild(Exception):
    def __init__(self, a, b):  # pickles, but BaseException's reduce cannot call this back
        super().__init__(f"{a}-{b}")


class _Final(Exception):
    def __init_subclass__(cls, **kwargs):
        raise TypeError("this exception class cannot be subclassed")


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


@pytest.mark.parametrize("exc", [_Unpicklable("boom"), _NoRebuild(1, 2)])
def test_an_unserializable_task_exception_arrives_with_a_cause_saying_so(exc, caplog):
    from skate._serialization import deserialize_inline
    from skate.core_worker.errors import task_error_entry
    from skate.exceptions import RayError, RayTaskError

    _, data = task_error_entry("f", _raised(exc), 123, "127.0.0.1")
    _, err = deserialize_inline(data)
    assert isinstance(err, RayTaskError)
    assert type(err.cause) is RayError
    note = str(err.cause)
    assert "isn't serializable" in note and type(exc).__name__ in note
    text = str(err)  # the remote traceback, and the note
    assert "isn't serializable" in text and ("boom" in text or "1-2" in text)
    assert "isn't serializable" in caplog.text


def test_an_exception_class_that_cannot_be_subclassed_logs_rays_advice(caplog):
    from skate.exceptions import RayTaskError

    err = RayTaskError.from_exception("f", _raised(_Final("final one")), 1, "127.0.0.1")
    for _ in range(2):  # also when the failure is already known
        caplog.clear()
        with caplog.at_level("WARNING"):
            raised = err.as_instanceof_cause()
        assert raised is err and isinstance(raised.cause, _Final)
        assert "can't be subclassed" in caplog.text
        assert ".cause" in caplog.text and "_Final" in caplog.text
        assert "this exception class cannot be subclassed" in caplog.text


# -- item 7: auto-init opt-out -----------------------------------------------------------


@pytest.mark.parametrize("var", ["SKATE_ENABLE_AUTO_CONNECT", "RAY_ENABLE_AUTO_CONNECT"])
def test_auto_connect_off_makes_first_use_a_clear_error(monkeypatch, var):
    from skate.exceptions import RaySystemError

    monkeypatch.setattr(context, "current", None)
    monkeypatch.setenv(var, "0")
    handle = _handle(Box)
    uses = [
        lambda: two.remote(1, 2),
        lambda: two.options(num_cpus=1).remote(1, 2),
        lambda: Box.remote(1),
        lambda: skate.put(1),
        lambda: skate.get([]),
        lambda: skate.wait([]),
        lambda: skate.kill(handle),
        lambda: skate.get_actor("anyone"),
        lambda: skate.get_gpu_ids(),
        lambda: skate.get_runtime_context(),
        lambda: skate.cluster_resources(),
    ]
    try:
        for use in uses:
            with pytest.raises(RuntimeError, match="init()") as info:
                use()
            assert isinstance(info.value, RaySystemError)  # Ray's type for this
            assert var in str(info.value) or "has not been started" in str(info.value)
            assert not skate.is_initialized()
    finally:
        if skate.is_initialized():  # only if auto-connect was not honoured
            skate.shutdown()
