"""Every error Skate raises, in one hierarchy, with Ray's names as aliases.

SkateError (RayError)
├── RayTaskError              a task raised; also an instance of the user's exception class
├── RayActorError
│   ├── ActorDiedError
│   └── ActorUnavailableError
├── WorkerCrashedError        the worker running a task died
├── TaskCancelledError        cancel() reached the task
├── GetTimeoutError           get(timeout=...) ran out (also a TimeoutError)
├── ObjectLostError
│   ├── OwnerDiedError
│   ├── ObjectFetchTimedOutError
│   └── ObjectReconstructionFailedError      a lost object could not be rebuilt
│       ├── ObjectReconstructionFailedMaxAttemptsExceededError
│       └── ObjectReconstructionFailedLineageEvictedError
├── ObjectStoreFullError
├── OutOfMemoryError
├── NodeDiedError
├── RuntimeEnvSetupError
├── TaskUnschedulableError
├── LocalRayletDiedError      the raylet of this process's own node died
├── RaySystemError            Skate itself failed (a broken connection, a dead raylet)
│   └── NotInitializedError   used before init() with auto-init turned off (also a RuntimeError)
└── ProtocolError             a peer sent a frame that breaks the wire protocol
"""

from __future__ import annotations

import logging
import traceback as _traceback

logger = logging.getLogger(__name__)

__all__ = [
    "SkateError",
    "RayError",
    "RayTaskError",
    "RayActorError",
    "ActorDiedError",
    "ActorUnavailableError",
    "WorkerCrashedError",
    "TaskCancelledError",
    "GetTimeoutError",
    "ObjectLostError",
    "OwnerDiedError",
    "ObjectFetchTimedOutError",
    "ObjectReconstructionFailedError",
    "ObjectReconstructionFailedMaxAttemptsExceededError",
    "ObjectReconstructionFailedLineageEvictedError",
    "ObjectStoreFullError",
    "OutOfMemoryError",
    "NodeDiedError",
    "RuntimeEnvSetupError",
    "TaskUnschedulableError",
    "LocalRayletDiedError",
    "RaySystemError",
    "NotInitializedError",
    "ProtocolError",
]


class SkateError(Exception):
    """Root of every Skate error."""


RayError = SkateError


class RayTaskError(SkateError):
    """A task raised an exception.

    `get` raises an instance of a class derived from both this class and the class of the
    original exception, so `except ValueError` still catches a remote ValueError.
    """

    def __init__(
        self,
        function_name: str = "",
        traceback_str: str = "",
        cause: BaseException | None = None,
        pid: int = 0,
        ip: str = "",
    ):
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.pid = pid
        self.ip = ip
        super().__init__(self._message())

    def _message(self) -> str:
        head = f"{type(self.cause).__name__ if self.cause is not None else 'RayTaskError'}"
        where = f"ray::{self.function_name}() (pid={self.pid}, ip={self.ip})"
        return f"{head}: {where}\n{self.traceback_str.rstrip()}"

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self):
        return (_rebuild_task_error, (self.function_name, self.traceback_str, self.cause, self.pid, self.ip))

    @classmethod
    def from_exception(cls, function_name: str, exc: BaseException, pid: int, ip: str) -> RayTaskError:
        """Wrap an exception caught while running a task, keeping its remote traceback."""
        if isinstance(exc, RayTaskError):
            return exc
        tb = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(function_name, tb, exc, pid, ip)

    def with_unserializable_cause(self, problem: BaseException) -> RayTaskError:
        """This error with its cause, which cannot travel (it does not pickle, or does not
        unpickle), replaced by a RayError that says so and names its class (as Ray does).

        The remote traceback stays, so the original exception's text is still seen; the
        note is logged where the task ran and added to the traceback."""
        note = (
            f"The original cause of the RayTaskError ({type(self.cause)}) isn't serializable: "
            f"{type(problem).__name__}: {problem}. Overwriting the cause to a RayError."
        )
        logger.warning(note)
        traceback_str = f"{self.traceback_str.rstrip()}\n\n{note}"
        return RayTaskError(self.function_name, traceback_str, SkateError(note), self.pid, self.ip)

    def as_instanceof_cause(self) -> BaseException:
        """An exception that is both a RayTaskError and an instance of the cause's class.

        If that class cannot be subclassed, this RayTaskError itself, with a warning that
        the user's exception is in its `.cause`."""
        cause = self.cause
        if cause is None or isinstance(cause, RayTaskError):
            return self
        cause_cls = type(cause)
        if not isinstance(cause, Exception) or issubclass(RayTaskError, cause_cls):
            return self
        dual = _dual_class(cause_cls)
        if isinstance(dual, str):
            logger.warning(
                f"User exception type {cause_cls} in RayTaskError can't be subclassed! This "
                "exception is raised as RayTaskError only. You can use `ray_task_error.cause` to "
                f"access the user exception. Failure in subclassing: {dual}"
            )
            return self
        err = dual.__new__(dual)  # type: ignore[call-overload]
        try:
            err.__dict__.update(getattr(cause, "__dict__", {}))
        except Exception:
            pass
        err.function_name = self.function_name
        err.traceback_str = self.traceback_str
        err.cause = cause
        err.pid = self.pid
        err.ip = self.ip
        err.args = (self._message(),)
        return err


_DUAL_CACHE: dict[type, type | str] = {}


def _dual_class(cause_cls: type) -> type | str:
    """The class derived from RayTaskError and `cause_cls`, or why there can be none."""
    if cause_cls in _DUAL_CACHE:
        return _DUAL_CACHE[cause_cls]
    dual: type | str
    try:
        dual = type(
            f"RayTaskError({cause_cls.__name__})",
            (RayTaskError, cause_cls),
            {
                "__init__": lambda self, *a, **k: None,
                "__str__": RayTaskError.__str__,
                "__reduce__": lambda self: (
                    _rebuild_dual,
                    (self.function_name, self.traceback_str, self.cause, self.pid, self.ip),
                ),
                "__module__": cause_cls.__module__,
            },
        )
    except Exception as exc:  # a class that refuses subclasses, a layout or metaclass conflict
        dual = str(exc) or type(exc).__name__
    _DUAL_CACHE[cause_cls] = dual
    return dual


def _rebuild_dual(function_name, traceback_str, cause, pid, ip):
    return RayTaskError(function_name, traceback_str, cause, pid, ip).as_instanceof_cause()


def _rebuild_task_error(function_name, traceback_str, cause, pid, ip):
    return RayTaskError(function_name, traceback_str, cause, pid, ip)


class RayActorError(SkateError):
    """The actor behind a call is dead or cannot be reached."""

    def __init__(self, message: str = "The actor died unexpectedly.", actor_id: str | None = None):
        self.actor_id = actor_id
        super().__init__(message)


class ActorDiedError(RayActorError):
    """The actor died: killed, its constructor failed, or its process exited."""


class ActorUnavailableError(RayActorError):
    """The actor is restarting or unreachable; the call may or may not have run."""


class WorkerCrashedError(SkateError):
    """The worker process running the task died before the task finished."""

    def __init__(self, message: str = "The worker died unexpectedly while executing this task."):
        super().__init__(message)


class TaskCancelledError(SkateError):
    """The task was cancelled with `cancel()`."""

    def __init__(self, message: str = "This task or its dependency was cancelled."):
        super().__init__(message)


class GetTimeoutError(SkateError, TimeoutError):
    """`get` did not receive every object before its timeout."""


class ObjectLostError(SkateError):
    """Every copy of an object is gone and it cannot be rebuilt."""

    def __init__(self, message: str = "The object was lost.", object_ref_hex: str = ""):
        self.object_ref_hex = object_ref_hex
        super().__init__(message)


class OwnerDiedError(ObjectLostError):
    """The process that owned the object died, so the object is gone."""


class ObjectReconstructionFailedError(ObjectLostError):
    """Every copy of an object was lost and running its task again did not bring it back."""


class ObjectReconstructionFailedMaxAttemptsExceededError(ObjectReconstructionFailedError):
    """The task that made a lost object has no retries left to run again."""


class ObjectReconstructionFailedLineageEvictedError(ObjectReconstructionFailedError):
    """The record of the task that made a lost object was evicted (max_lineage_bytes)."""


class ObjectFetchTimedOutError(ObjectLostError):
    """Fetching the object from another node took too long."""


class ObjectStoreFullError(SkateError):
    """The object store has no room for the object."""


class OutOfMemoryError(SkateError):
    """The node ran low on memory and the task's worker was killed."""


class NodeDiedError(SkateError):
    """The node the work ran on died."""


class RuntimeEnvSetupError(SkateError):
    """The runtime environment could not be built."""


class TaskUnschedulableError(SkateError):
    """The task can never be scheduled."""


class LocalRayletDiedError(SkateError):
    """The raylet (node manager) of the node this process runs on died, so the process can no
    longer run or wait for work; its log is raylet.log in the session's logs directory."""

    def __init__(self, message: str = "The local raylet of this process's node died; see its raylet.log."):
        super().__init__(message)


class RaySystemError(SkateError):
    """Skate itself failed: a lost connection, a dead node manager."""


class ActorClassInheritanceException(TypeError):
    """A class was defined with an actor class as a base (`class B(ActorClassA)`), which is not
    supported: inherit from the plain class and decorate the subclass instead.

    A usage error rather than a SkateError, so not in `__all__`; Ray exports it from
    `ray.actor`, and so does `skate.actor`."""


class RemoteDecoratorError(TypeError, AssertionError):
    """`@remote` used with parentheses but no options (`@remote()`), or with positional
    arguments. Ray asserts there (AssertionError); a TypeError is what Python programs expect
    of a misused callable, so this is both. Not a SkateError, so not in `__all__`."""


class NotInitializedError(RaySystemError, RuntimeError):
    """The API was used before `init()` and no cluster may be started on first use (or the
    call never starts one). A RaySystemError as in Ray, and a RuntimeError as Python code
    expects of a call made in the wrong state."""


class ProtocolError(SkateError):
    """A peer broke the wire protocol: a bad handshake, an oversized or malformed frame."""


class UnsafePathError(SkateError, PermissionError):
    """A file or directory Skate trusts (session root, session, token, spill directory) is a
    symbolic link, belongs to another user, or is open to other users: refused rather than used.
    A PermissionError too, as Python code expects of a path it may not use."""


class JobSubmissionError(SkateError, RuntimeError):
    """The job server refused or failed a request (`status` is its HTTP status: 400 bad input,
    401 no or wrong token, 404 no such job). A RuntimeError, as Ray's SDK raises."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class AuthenticationError(SkateError, ConnectionError):
    """A server refused this process's cluster token (or could not prove it holds the token):
    a ConnectionError too, as Python code expects of a connection that could not be made."""


class GcsStorageError(RaySystemError):
    """The GCS's storage (`--storage`: SQLite file, Redis) cannot be used: unreachable, a bad
    password, a corrupt or foreign file, tables of another cluster. Raised at start, before
    anything is written, so nothing is overwritten."""
