"""Placement groups (Ray's `ray.util.placement_group`): reserve bundles of resources, then run
tasks and actors in them.

`placement_group(bundles, strategy)` checks its input here, at the call site, then registers
the group with the GCS in one request; the GCS places the bundles (see
`gcs.placement_group_manager`). `ready()` is an ObjectRef this process owns, filled when the
GCS reports the group created; `wait()` asks the GCS directly.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from skate import _ids
from skate._id_types import PlacementGroupID
from skate._serialization import serialize
from skate.core_worker.call_context import current_call
from skate.core_worker.errors import error_entry
from skate.core_worker.placement_groups import GroupTracker
from skate.exceptions import RaySystemError
from skate.gcs.pg_scheduler import STRATEGIES
from skate.object_ref import ObjectRef
from skate.protocol.connection import RemoteError
from skate.protocol.messages import INLINE

__all__ = [
    "PlacementGroup",
    "get_current_placement_group",
    "get_placement_group",
    "placement_group",
    "placement_group_table",
    "remove_placement_group",
]


def _core() -> Any:
    from skate._api import _core as current

    return current()


class PlacementGroup:
    """A handle to a placement group: its id and bundles. Pickles by value (id and bundles)."""

    def __init__(self, id: PlacementGroupID, bundle_cache: list[dict] | None = None):
        self.id = id
        self._bundles = [dict(b) for b in bundle_cache] if bundle_cache is not None else None

    @staticmethod
    def empty() -> PlacementGroup:
        return PlacementGroup(PlacementGroupID.nil())

    @property
    def is_empty(self) -> bool:
        return self.id.is_nil()

    @property
    def bundle_specs(self) -> list[dict]:
        """The bundles, as given to `placement_group` (asked of the GCS if not known here)."""
        if self._bundles is None:
            row = _table_row(self.id.hex())
            self._bundles = [dict(row["bundles"][i]) for i in sorted(row["bundles"])] if row else []
        return [dict(b) for b in self._bundles]

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def ready(self) -> ObjectRef:
        """An ObjectRef that resolves to this group once it is created (usable in get/wait)."""
        core = _core()
        oid = _ids.object_id_for_put(core.current_task_id(), next(core.put_index))
        ref = ObjectRef(oid, None, core)
        value = serialize(self).to_inline()
        pg_hex = self.id.hex()

        def settled(created: bool, why: Any = "it was removed") -> None:
            if created:
                entry: tuple = (INLINE, value)
            else:
                entry = error_entry(RaySystemError(f"placement group {pg_hex} is not ready: {why}"))
            core.store.put(oid, entry)
            if not core.refs.has(oid):
                core.ownership.on_ref_zero(oid, None)

        def on_loop() -> None:
            if GroupTracker.of(core).on_settled(pg_hex, lambda state: settled(state == "CREATED")):
                return  # made here: the GCS's news of it fills the ref, no round trip
            fut = core.gcs.call("wait_placement_group", {"pg_id": pg_hex})

            def done(f: Any) -> None:
                if f.cancelled():
                    settled(False, "the request was cancelled")
                elif f.exception() is not None:
                    settled(False, f.exception())
                else:
                    settled(bool(f.result()))

            fut.add_done_callback(done)

        core.post(on_loop)
        return ref

    def wait(self, timeout_seconds: float | int = 30) -> bool:
        """Wait until the group is created: True, or False after `timeout_seconds`."""
        if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, numbers.Real):
            raise TypeError(f"timeout_seconds must be a number, got {timeout_seconds!r}")
        core = _core()
        timeout = max(float(timeout_seconds), 0.0)
        local = GroupTracker.of(core).wait(self.id.hex(), timeout)
        if local is not None:
            return local
        return bool(
            core.request(
                core.gcs, "wait_placement_group", {"pg_id": self.id.hex(), "timeout": timeout}, timeout + 30
            )
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"PlacementGroup(id={self.id.hex()}, bundles={self._bundles})"

    def __reduce__(self) -> tuple:
        return (PlacementGroup, (self.id, self._bundles))


def _check_bundles(bundles: Any) -> list[dict[str, float]]:
    if not isinstance(bundles, (list, tuple)):
        raise TypeError(
            f"bundles must be a list of dicts of resource name to amount, got {type(bundles).__name__}"
        )
    if not bundles:
        raise ValueError("The placement group `bundles` argument cannot contain an empty list")
    out = []
    for i, bundle in enumerate(bundles):
        if not isinstance(bundle, dict):
            raise TypeError(
                f"bundle {i} must be a dict of resource name to amount, got {type(bundle).__name__}"
            )
        for name, amount in bundle.items():
            if not isinstance(name, str):
                raise TypeError(f"bundle {i}: resource names must be str, got {name!r}")
            if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
                raise TypeError(
                    f"bundle {i}: {name} must be a number, got {type(amount).__name__} {amount!r}"
                )
            if not math.isfinite(amount) or amount < 0:
                raise ValueError(f"bundle {i}: {name} must be a finite amount >= 0, got {amount}")
        if not any(bundle.values()):
            raise ValueError(
                f"bundle {i} is {bundle}: a bundle cannot be an empty dict or hold only 0 amounts"
            )
        out.append({k: float(v) for k, v in bundle.items() if v})
    return out


def placement_group(
    bundles: list[dict[str, float]],
    strategy: str = "PACK",
    name: str = "",
    lifetime: str | None = None,
    _max_cpu_fraction_per_node: float | None = None,
    _soft_target_node_id: str | None = None,
    bundle_label_selector: Any = None,
) -> PlacementGroup:
    """Reserve `bundles` across the cluster with `strategy` (PACK, SPREAD, STRICT_PACK,
    STRICT_SPREAD). Returns at once; `ready()`/`wait()` tell when the bundles are reserved.
    A group lives until removed, or until its job ends unless `lifetime="detached"`."""
    checked = _check_bundles(bundles)
    if strategy not in STRATEGIES:
        raise ValueError(
            f"Invalid placement group strategy {strategy!r}. Supported strategies are {STRATEGIES}."
        )
    if not isinstance(name, str):
        raise TypeError(f"The name of a placement group must be a str, got {type(name).__name__} {name!r}")
    if lifetime not in (None, "detached"):
        raise ValueError(
            f"Placement group `lifetime` argument must be either `None` or 'detached', got {lifetime!r}"
        )
    fraction = _max_cpu_fraction_per_node
    if fraction is not None and (
        isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < fraction <= 1
    ):
        raise ValueError(f"_max_cpu_fraction_per_node must be a number in (0, 1], got {fraction!r}")
    core = _core()
    pg_id = PlacementGroupID.from_random()
    payload = {
        "pg_id": pg_id.hex(),
        "bundles": checked,
        "strategy": strategy,
        "name": name,
        "namespace": core.namespace,
        "job": core.job_id,
        "creator": core.worker_id,
        "detached": lifetime == "detached",
        "max_cpu_fraction": None if fraction is None else float(fraction),
    }
    GroupTracker.of(core).track(pg_id.hex())
    if name or strategy == "STRICT_PACK":
        # The GCS may refuse these (a taken name, no node big enough): wait for its answer.
        try:
            core.request(core.gcs, "create_placement_group", payload)
        except RemoteError as exc:
            GroupTracker.of(core).removed(pg_id.hex())
            if exc.kind == "ValueError":
                raise ValueError(exc.message) from None
            raise
    else:
        # Nothing the GCS could refuse: no round trip. Later requests about the group travel
        # on the same connection after this one, so the GCS always sees it first.
        core.post(core.gcs.notify, "create_placement_group", payload)
    return PlacementGroup(pg_id, checked)


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Remove a group: its bundles are freed, its actors killed and its running tasks cancelled."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(
            f"remove_placement_group expects a PlacementGroup, got {type(placement_group).__name__}"
        )
    core = _core()
    pg_hex = placement_group.id.hex()
    GroupTracker.of(core).removed(pg_hex)
    # Ordered after anything sent before on this connection; the GCS frees the bundles, kills
    # what runs in them, and answers every later request about the group as removed.
    core.post(core.gcs.notify, "remove_placement_group", {"pg_id": pg_hex})


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The live group of that name in this job's namespace; ValueError if there is none."""
    if not isinstance(placement_group_name, str) or not placement_group_name:
        raise ValueError(f"placement_group_name must be a non-empty str, got {placement_group_name!r}")
    core = _core()
    row = core.request(
        core.gcs, "get_placement_group", {"name": placement_group_name, "namespace": core.namespace}
    )
    if row is None:
        raise ValueError(f"Failed to look up placement group with name: {placement_group_name}")
    return _from_row(row)


def placement_group_table(placement_group: PlacementGroup | None = None) -> dict:
    """One group's state (`state`, `bundles`, `bundles_to_node_id`, ...), or every group's by id."""
    core = _core()
    if placement_group is None:
        return core.request(core.gcs, "placement_group_table", {})
    return _table_row(placement_group.id.hex()) or {}


def get_current_placement_group() -> PlacementGroup | None:
    """The group the current task or actor runs in; None in the driver or outside any group."""
    call = current_call()
    current = call.placement_group if call is not None else None
    if current is None:
        return None
    return PlacementGroup(PlacementGroupID.from_hex(current[0]), current[3])


def _table_row(pg_hex: str) -> dict | None:
    core = _core()
    return core.request(core.gcs, "placement_group_table", {"pg_id": pg_hex}) or None


def _from_row(row: dict) -> PlacementGroup:
    bundles = row["bundles"]
    return PlacementGroup(
        PlacementGroupID.from_hex(row["placement_group_id"]), [dict(bundles[i]) for i in sorted(bundles)]
    )
