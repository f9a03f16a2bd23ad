"""Task states as task events carry them: small ints on the wire, Ray's names for people.

The order is the order of a task attempt's life, so the furthest state seen is its state
(FINISHED and FAILED are both terminal; FAILED wins if both are reported).
"""

from __future__ import annotations

import struct

from skate._ids import TASK_ID_BYTES

PENDING_ARGS_AVAIL = 0
PENDING_NODE_ASSIGNMENT = 1
SUBMITTED_TO_WORKER = 2
RUNNING = 3
FINISHED = 4
FAILED = 5

NAMES = (
    "PENDING_ARGS_AVAIL",
    "PENDING_NODE_ASSIGNMENT",
    "SUBMITTED_TO_WORKER",
    "RUNNING",
    "FINISHED",
    "FAILED",
)
TERMINAL = frozenset({FINISHED, FAILED})
OWNER_STATES = (PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, SUBMITTED_TO_WORKER)


def owner_states(times: tuple | list) -> list:
    """An owner's (submitted, ready, sent) times as `[state, time, ...]`, leaving out those it
    never saw (NaN)."""
    return [s for state, when in zip(OWNER_STATES, times) if when == when for s in (state, when)]


# Rows of attempts that began and ended between two sends of the worker that ran them, packed
# and joined into one byte string per batch (no object per row for the garbage collector,
# nothing to encode): task id, attempt, info key, then the times of PENDING_ARGS_AVAIL,
# PENDING_NODE_ASSIGNMENT, SUBMITTED_TO_WORKER (the owner's, sent with the spec), RUNNING and
# FINISHED. A time never seen is NaN. 64 bytes, a whole number of 4-byte words.
DONE_ROW = struct.Struct(f"<{TASK_ID_BYTES}sIiddddd")
# The usual call's row, shorter (`TaskEventBuffer.ran`'s short way): task id, attempt, info
# key, the owner's one time (it pushed the call as it submitted it: PENDING_ARGS_AVAIL,
# PENDING_NODE_ASSIGNMENT and SUBMITTED_TO_WORKER at once), the worker's `time.perf_counter()`
# reading at RUNNING (its batch carries the offset to the wall clock) and how long the call
# took. 48 bytes: the worker's thread packs six values, not eight, and adds nothing.
SHORT_ROW = struct.Struct(f"<{TASK_ID_BYTES}sIiddd")

# Ray's task types.
NORMAL_TASK = "NORMAL_TASK"
ACTOR_CREATION_TASK = "ACTOR_CREATION_TASK"
ACTOR_TASK = "ACTOR_TASK"

# Ray's error types (the `error_type` of a failed task), by the exception class name that
# causes them; anything else a task raised is TASK_EXECUTION_EXCEPTION.
ERROR_TYPES = {
    "WorkerCrashedError": "WORKER_DIED",
    "ActorDiedError": "ACTOR_DIED",
    "ActorUnavailableError": "ACTOR_UNAVAILABLE",
    "TaskCancelledError": "TASK_CANCELLED",
    "OutOfMemoryError": "OUT_OF_MEMORY",
    "ObjectLostError": "OBJECT_LOST",
    "OwnerDiedError": "OWNER_DIED",
    "ObjectReconstructionFailedLineageEvictedError": "OBJECT_UNRECONSTRUCTABLE_LINEAGE_EVICTED",
    "ObjectReconstructionFailedMaxAttemptsExceededError": "OBJECT_UNRECONSTRUCTABLE_MAX_ATTEMPTS_EXCEEDED",
    "NodeDiedError": "NODE_DIED",
    "RuntimeEnvSetupError": "RUNTIME_ENV_SETUP_FAILED",
    "RaySystemError": "TASK_UNSCHEDULABLE_ERROR",
}
TASK_EXECUTION_EXCEPTION = "TASK_EXECUTION_EXCEPTION"
DEPENDENCY_RESOLUTION_FAILED = "DEPENDENCY_RESOLUTION_FAILED"


def error_type_of(exc: BaseException) -> str:
    """Ray's error type for an exception that failed a task."""
    for cls in type(exc).__mro__:
        found = ERROR_TYPES.get(cls.__name__)
        if found is not None:
            return found
    return TASK_EXECUTION_EXCEPTION
