"""What one caller knows about one actor it calls (`ActorState`), shared by the actor
submitter and the user threads that push calls or read lane replies themselves."""

from __future__ import annotations

import collections
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from skate.core_worker.caller_lane import CallerLane
    from skate.core_worker.task_manager import TaskEntry
    from skate.protocol.connection import Connection

# Counting a call's end (`ActorState.finished`): by the I/O thread, or by a user thread that
# read a lane's reply itself.
_ENDS = threading.Lock()


class ActorState:
    """What one caller knows about one actor."""

    __slots__ = (
        "actor_id",
        "conn",
        "connecting",
        "restarting",
        "queue",
        "next_seq",
        "inflight",
        "dead_error",
        "incarnation",
        "name",
        "finished",
        "address",
        "lane",
        "lane_inflight",
        "conn_inflight",
        "direct_calls",
        "held",
        "executor",
        "ev_infos",
    )

    def __init__(self, actor_id: bytes, name: str):
        self.actor_id = actor_id
        self.name = name
        self.conn: Connection | None = None
        self.connecting = False
        self.restarting = False  # the GCS said it restarts: calls without retries fail fast
        self.queue: collections.deque[TaskEntry] = collections.deque()  # in submission order
        self.next_seq = 0
        self.inflight: dict[bytes, TaskEntry] = {}
        self.dead_error: BaseException | None = None
        self.incarnation = -1
        # Calls that have ended (by the I/O thread; see Submitter._release). When it equals
        # next_seq nothing is queued, in flight or being resent: a user thread may push the
        # next call itself (`submit`), in order by construction.
        self.finished = 0
        self.address: str | None = None  # where the current incarnation listens
        # A lane to the actor (core_worker.lanes, caller_lane): a socket of its own, read by
        # the actor's main thread at one end and by our user threads or the loop at the
        # other. Once it is open, the calls user threads push themselves (when the actor is
        # idle for this caller) go on it, and so do the loop's but streaming ones, which go
        # on `conn`. Calls on the two are never in flight at once (`_channel`), so neither
        # overtakes the other. Each count is raised where a call is sent and lowered first
        # thing when it is answered, before the call counts as finished.
        self.lane: CallerLane | None = None
        self.lane_inflight = 0
        self.conn_inflight = 0
        self.direct_calls = 0  # calls pushed by user threads, until a lane is opened
        # The loop holds calls back until the lane's call in flight is over (under the
        # submitter's lock, with lane_inflight): its reader must then wake the loop.
        self.held = False
        # (node id, worker id, pid) of the current incarnation's worker: where the task
        # event rows its owner writes from replies say the calls ran; and the info id of each
        # method's calls, as (job id, info id) (TaskEventBuffer.ran_elsewhere)
        self.executor: tuple = (None, None, None)
        self.ev_infos: dict[str, tuple] = {}

    def end_call(self, entry: TaskEntry) -> None:
        """Count a call as ended, once (by whichever thread gets here first)."""
        with _ENDS:
            if entry.actor_state is self:
                entry.actor_state = None
                self.finished += 1
