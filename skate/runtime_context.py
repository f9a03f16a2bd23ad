"""get_runtime_context(): who and where the calling code is."""

from __future__ import annotations

import warnings
from typing import Any

from skate._id_types import ActorID, JobID, NodeID, TaskID


def _deprecated(name: str, instead: str) -> None:
    warnings.warn(
        f"RuntimeContext.{name} is deprecated (it returns an ID object); use {instead}, which returns "
        "the hex string.",
        DeprecationWarning,
        stacklevel=3,
    )


class RuntimeContext:
    """A view of the current process's job, node, task and resources."""

    def __init__(self, core: Any):
        self._core = core

    def get_job_id(self) -> str:
        """The current job's id, as a hex string."""
        return self._core.job_id

    def get_node_id(self) -> str:
        """The id of the node this process runs on, as a hex string."""
        return self._core.node_id

    def get_node_labels(self) -> dict[str, str]:
        """The labels of the node this process runs on (its custom labels and `ray.io/node-id`),
        asked of the GCS once per process: a node's labels never change."""
        core = self._core
        labels = getattr(core, "_node_labels", None)
        if labels is None:
            nodes = core.request(core.gcs, "get_nodes")
            labels = next((dict(n.get("labels") or {}) for n in nodes if n["node_id"] == core.node_id), {})
            core._node_labels = labels
        return dict(labels)

    def get_worker_id(self) -> str:
        """This process's worker id, as a hex string."""
        return self._core.worker_id

    def get_task_id(self) -> str | None:
        """The id of the task or actor call running this code (its own, even among concurrent
        calls of one actor); None on the driver."""
        from skate.core_worker.call_context import current_call

        call = current_call()
        return call.task_id.hex() if call is not None else None

    def get_actor_id(self) -> str | None:
        """The id of the actor this code runs in (hex), or None outside actors."""
        return self._core.actor_id

    def get_actor_name(self) -> str | None:
        """The name of the actor this code runs in, or None."""
        return self._core.actor_name

    def get_assigned_resources(self) -> dict[str, float]:
        """The resources assigned to the current task or actor."""
        return dict(self._core.assigned_resources)

    @property
    def namespace(self) -> str:
        """The current job's namespace."""
        return self._core.namespace

    def get_namespace(self) -> str:
        """The current job's namespace."""
        return self._core.namespace

    # Deprecated in Ray: ID objects instead of hex strings; use the get_*_id() methods.
    @property
    def job_id(self) -> JobID:
        """Deprecated: the job's JobID (use get_job_id())."""
        _deprecated("job_id", "get_job_id()")
        return JobID.from_hex(self.get_job_id())

    @property
    def node_id(self) -> NodeID:
        """Deprecated: the node's NodeID (use get_node_id())."""
        _deprecated("node_id", "get_node_id()")
        return NodeID.from_hex(self.get_node_id())

    @property
    def task_id(self) -> TaskID | None:
        """Deprecated: the current task's TaskID, None on the driver (use get_task_id())."""
        _deprecated("task_id", "get_task_id()")
        task_id = self.get_task_id()
        return TaskID.from_hex(task_id) if task_id is not None else None

    @property
    def actor_id(self) -> ActorID | None:
        """Deprecated: the actor's ActorID, None outside actors (use get_actor_id())."""
        _deprecated("actor_id", "get_actor_id()")
        actor_id = self.get_actor_id()
        return ActorID.from_hex(actor_id) if actor_id is not None else None

    @property
    def runtime_env(self) -> Any:
        """The effective runtime env of this code (a `RuntimeEnv`): the job's merged with the
        task's or actor's own, packages named by their uploaded URIs."""
        from skate.runtime_env import RuntimeEnv

        env = self._core.runtime_envs.parent or {}
        out = RuntimeEnv()
        out.update(env)
        return out

    def get_runtime_env_string(self) -> str:
        """The effective runtime env as a JSON string."""
        import json

        return json.dumps(self._core.runtime_envs.parent or {}, sort_keys=True)

    @property
    def was_current_actor_reconstructed(self) -> bool:
        """Whether this actor was restarted after a failure (its constructor ran again)."""
        return bool(self._core.actor_reconstructed)

    @property
    def current_actor(self) -> Any:
        """A handle to the actor this code runs in."""
        from skate.actor import _handle_from_info

        core = self._core
        if core.actor_id is None:
            raise RuntimeError("This method is only available in an actor.")
        info = core.request(core.gcs, "get_actor_info", {"actor_id": bytes.fromhex(core.actor_id)})
        if info.get("detached"):
            info = dict(info, owner=None)
        return _handle_from_info(info, core)

    def get(self) -> dict[str, Any]:
        """Job, node and namespace; plus the task id inside a task and the actor id inside an actor."""
        out: dict[str, Any] = {
            "job_id": self.get_job_id(),
            "node_id": self.get_node_id(),
            "namespace": self.namespace,
        }
        task_id = self.get_task_id()
        if task_id is not None:
            out["task_id"] = task_id
        actor_id = self.get_actor_id()
        if actor_id is not None:
            out["actor_id"] = actor_id
        return out

    def is_canceled(self) -> bool:
        """Whether cancel() reached the task running this code (it may choose to stop early)."""
        from skate.core_worker.call_context import current_call

        call = current_call()
        return bool(call is not None and call.cancelled)


def get_runtime_context() -> RuntimeContext:
    """Who and where the calling code is: job, node, task, actor, namespace, resources."""
    from skate._auto_init import current_or_init

    return RuntimeContext(current_or_init())
