"""The exception hierarchy and RayTaskError's dual-class behaviour."""

from __future__ import annotations

import pickle

import pytest

from skate import exceptions as ex
from skate.protocol.connection import ConnectionClosed, RemoteError


class AppError(Exception):
    """A user exception whose constructor takes two arguments."""

    def __init__(self, code, detail):
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


class Unsubclassable(Exception):
    def __init_subclass__(cls, **kwargs):
        raise TypeError("no subclasses")


def remote_failure(exc: BaseException, name: str = "my_task") -> ex.RayTaskError:
    """What a worker builds when the task `name` raises `exc`."""
    try:
        raise exc
    except BaseException as caught:
        return ex.RayTaskError.from_exception(name, caught, pid=4321, ip="10.1.2.3")


def test_from_exception_keeps_traceback_and_cause():
    err = remote_failure(ValueError("bad input"))
    assert err.function_name == "my_task"
    assert isinstance(err.cause, ValueError)
    assert "Traceback (most recent call last)" in err.traceback_str
    assert "raise exc" in err.traceback_str
    assert "ValueError: bad input" in err.traceback_str
    assert err.pid == 4321 and err.ip == "10.1.2.3"


def test_from_exception_of_a_task_error_returns_it():
    inner = remote_failure(ValueError("x"))
    assert ex.RayTaskError.from_exception("outer", inner, 1, "ip") is inner


def test_as_instanceof_cause_builtin():
    err = remote_failure(ValueError("bad input")).as_instanceof_cause()
    assert isinstance(err, ex.RayTaskError)
    assert isinstance(err, ValueError)
    assert isinstance(err, ex.SkateError)
    text = str(err)
    assert "my_task" in text
    assert "ValueError: bad input" in text
    assert "Traceback (most recent call last)" in text
    assert "pid=4321" in text and "10.1.2.3" in text
    with pytest.raises(ValueError):
        raise err


def test_as_instanceof_cause_user_class_with_two_arg_init():
    err = remote_failure(AppError(404, "not found"), name="fetch").as_instanceof_cause()
    assert isinstance(err, AppError)
    assert isinstance(err, ex.RayTaskError)
    assert err.code == 404 and err.detail == "not found"  # the cause's attributes carry over
    assert "fetch" in str(err) and "AppError" in str(err)
    assert err.cause.args == (404, "not found")
    with pytest.raises(AppError):
        raise err


def test_dual_class_is_cached_and_named():
    a = remote_failure(KeyError("a")).as_instanceof_cause()
    b = remote_failure(KeyError("b")).as_instanceof_cause()
    assert type(a) is type(b)
    assert "KeyError" in type(a).__name__
    assert isinstance(a, LookupError)


def test_as_instanceof_cause_with_os_error():
    err = remote_failure(FileNotFoundError(2, "no such file", "/x")).as_instanceof_cause()
    assert isinstance(err, FileNotFoundError) and isinstance(err, ex.RayTaskError)
    assert "no such file" in str(err)


def test_as_instanceof_cause_without_usable_cause_returns_self():
    plain = ex.RayTaskError("f", "tb")
    assert plain.as_instanceof_cause() is plain
    assert "f" in str(plain) and "tb" in str(plain)
    blocked = remote_failure(Unsubclassable("x"))
    dual = blocked.as_instanceof_cause()
    assert dual is blocked
    assert isinstance(dual, ex.RayTaskError)
    nested = ex.RayTaskError("outer", "tb", remote_failure(ValueError("inner")))
    assert nested.as_instanceof_cause() is nested


def test_base_exception_cause_is_not_mixed_in():
    err = remote_failure(KeyboardInterrupt())
    out = err.as_instanceof_cause()
    assert out is err
    assert not isinstance(out, KeyboardInterrupt)


def test_plain_task_error_pickles():
    err = remote_failure(AppError(500, "boom"))
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ex.RayTaskError
    assert back.function_name == err.function_name
    assert back.traceback_str == err.traceback_str
    assert isinstance(back.cause, AppError) and back.cause.code == 500
    assert back.pid == 4321 and back.ip == "10.1.2.3"
    assert str(back) == str(err)


def test_dual_survives_pickle():
    for cause in (ValueError("bad"), AppError(418, "teapot")):
        dual = remote_failure(cause).as_instanceof_cause()
        back = pickle.loads(pickle.dumps(dual))
        assert isinstance(back, ex.RayTaskError)
        assert isinstance(back, type(cause))
        assert str(back) == str(dual)
        assert back.function_name == "my_task"
        assert type(back.cause) is type(cause) and back.cause.args == cause.args


def test_dual_pickled_then_reraised_as_instance_of_cause():
    # What `get` does with an error that came back over the wire.
    dual = remote_failure(AppError(1, "x")).as_instanceof_cause()
    again = pickle.loads(pickle.dumps(dual)).as_instanceof_cause()
    assert isinstance(again, AppError) and isinstance(again, ex.RayTaskError)
    assert again.code == 1


def test_hierarchy():
    assert ex.RayError is ex.SkateError
    assert issubclass(ex.GetTimeoutError, TimeoutError)
    assert issubclass(ex.GetTimeoutError, ex.SkateError)
    assert issubclass(ex.OwnerDiedError, ex.ObjectLostError)
    assert issubclass(ex.ObjectFetchTimedOutError, ex.ObjectLostError)
    assert issubclass(ex.ActorDiedError, ex.RayActorError)
    assert issubclass(ex.ActorUnavailableError, ex.RayActorError)
    for name in ex.__all__:
        cls = getattr(ex, name)
        assert issubclass(cls, ex.SkateError), name
    assert issubclass(RemoteError, ex.RaySystemError)
    assert issubclass(ConnectionClosed, ex.RaySystemError)
    with pytest.raises(TimeoutError):
        raise ex.GetTimeoutError("too slow")


def test_default_messages_and_fields():
    assert "died" in str(ex.WorkerCrashedError())
    assert "cancelled" in str(ex.TaskCancelledError())
    lost = ex.OwnerDiedError("gone", object_ref_hex="abcd")
    assert lost.object_ref_hex == "abcd" and str(lost) == "gone"
    actor = ex.ActorDiedError("dead actor", actor_id="ff")
    assert actor.actor_id == "ff" and str(actor) == "dead actor"


@pytest.mark.parametrize(
    "make",
    [
        lambda: ex.WorkerCrashedError(),
        lambda: ex.OwnerDiedError("gone", "abcd"),
        lambda: ex.ActorDiedError("dead", "ff"),
        lambda: ex.GetTimeoutError("t"),
        lambda: ex.ObjectStoreFullError("full"),
    ],
)
def test_simple_errors_pickle(make):
    err = make()
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    assert back.__dict__ == err.__dict__
