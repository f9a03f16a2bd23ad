"""Where a placement group's bundles go: a pure function of bundles and node views.

Bundles (resource shapes in fixed point, see raylet.resources) and a view of the nodes come in;
an assignment (bundle index -> node id) comes out, or None when the group cannot be placed now.
Ray's four strategies:

- STRICT_PACK: every bundle on one node (the one left with the least free CPU: best fit).
- PACK: all on one node if one can take them; otherwise as few nodes as possible, each bundle
  on a node the group already uses when it fits there, else on the best-fitting other node.
- STRICT_SPREAD: every bundle on a different node; no node holds two bundles of the group.
- SPREAD: like STRICT_SPREAD where it can be, but a node may take a second bundle (the node
  with the fewest bundles of the group first) rather than leave the group unplaced.

`placed` holds bundles of the group that already have a node (after a node holding others died,
only the lost bundles are placed again): they count for packing and spreading, and STRICT_PACK
keeps the lost bundles on the node of the remaining ones.

`max_cpu_fraction` caps the CPU the group's bundles may take on any one node, as a fraction of
that node's CPU (Ray's `_max_cpu_fraction_per_node`). Ties are broken by node id, so the same
inputs always give the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from skate._bundles import (  # noqa: F401  (re-exported: the names bundles are known by)
    BUNDLE_MARKER,
    BUNDLE_SLIVER,
    group_of_resource,
    group_resources,
    rewrite_demand,
)
from skate.raylet import resources as res

PACK, SPREAD, STRICT_PACK, STRICT_SPREAD = "PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"
STRATEGIES = (PACK, SPREAD, STRICT_PACK, STRICT_SPREAD)


@dataclass
class NodeView:
    """One node as the GCS sees it (fixed-point amounts)."""

    node_id: str
    total: dict[str, int]
    available: dict[str, int]
    alive: bool = True
    group_cpu: int = field(default=0)  # CPU the group already has on this node (for max_cpu_fraction)


def schedule(
    bundles: list[dict[str, int]],
    strategy: str,
    nodes: list[NodeView],
    placed: dict[int, str] | None = None,
    max_cpu_fraction: float | None = None,
) -> dict[int, str] | None:
    """Nodes for the bundles not in `placed`, or None if they cannot all be placed now."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown placement strategy {strategy!r}; expected one of {STRATEGIES}")
    placed = dict(placed or {})
    todo = [i for i in range(len(bundles)) if i not in placed]
    if not todo:
        return {}
    alive = {n.node_id: n for n in nodes if n.alive}
    if any(node not in alive for node in placed.values()):
        return None  # a bundle is said to be on a node that is gone: the caller must re-place it
    free = {nid: dict(n.available) for nid, n in alive.items()}
    caps = _cpu_caps(alive, bundles, placed, max_cpu_fraction)
    counts: dict[str, int] = {}
    for node in placed.values():
        counts[node] = counts.get(node, 0) + 1
    if strategy == STRICT_PACK:
        return _strict_pack(bundles, todo, alive, free, caps, placed)
    if strategy == PACK:
        together = _strict_pack(bundles, todo, alive, free, caps, placed)
        if together is not None and len(set(placed.values())) <= 1:
            return together
    out: dict[int, str] = {}
    for i in todo:
        need = bundles[i]
        fitting = [nid for nid in sorted(alive) if _fits(need, free[nid], caps.get(nid))]
        if strategy == STRICT_SPREAD:
            fitting = [nid for nid in fitting if not counts.get(nid)]
        if not fitting:
            return None
        if strategy == PACK:  # best fit among the group's nodes, else the node with the most room
            used = [nid for nid in fitting if counts.get(nid)]
            if used:
                chosen = min(used, key=lambda nid: (_left_cpu(need, free[nid]), nid))
            else:
                chosen = min(fitting, key=lambda nid: (-free[nid].get("CPU", 0), nid))
        else:  # SPREAD, STRICT_SPREAD: fewest bundles of the group, then most free CPU
            chosen = min(fitting, key=lambda nid: (counts.get(nid, 0), -free[nid].get("CPU", 0), nid))
        _take(need, free[chosen], caps, chosen)
        counts[chosen] = counts.get(chosen, 0) + 1
        out[i] = chosen
    return out


def feasible_ever(bundles: list[dict[str, int]], strategy: str, nodes: list[NodeView]) -> bool:
    """Could the group be placed on these nodes if nothing else ran there (totals, not free)?"""
    empty = [NodeView(n.node_id, n.total, dict(n.total), n.alive) for n in nodes]
    return schedule(bundles, strategy, empty) is not None


def _cpu_caps(
    alive: dict[str, NodeView],
    bundles: list[dict[str, int]],
    placed: dict[int, str],
    fraction: float | None,
) -> dict[str, int]:
    """Per node, how much more CPU the group may take there (only with a max CPU fraction)."""
    if fraction is None:
        return {}
    caps = {}
    for nid, node in alive.items():
        used = sum(bundles[i].get("CPU", 0) for i, n in placed.items() if n == nid)
        caps[nid] = int(node.total.get("CPU", 0) * fraction) - used
    return caps


def _fits(need: dict[str, int], free: dict[str, int], cap: int | None) -> bool:
    if cap is not None and need.get("CPU", 0) > cap:
        return False
    return res.fits(need, free)


def _take(need: dict[str, int], free: dict[str, int], caps: dict[str, int], nid: str) -> None:
    res.subtract(free, need)
    if nid in caps:
        caps[nid] -= need.get("CPU", 0)


def _left_cpu(need: dict[str, int], free: dict[str, int]) -> int:
    return free.get("CPU", 0) - need.get("CPU", 0)


def _strict_pack(
    bundles: list[dict[str, int]],
    todo: list[int],
    alive: dict[str, NodeView],
    free: dict[str, dict[str, int]],
    caps: dict[str, int],
    placed: dict[int, str],
) -> dict[int, str] | None:
    total: dict[str, int] = {}
    for i in todo:
        res.add(total, bundles[i])
    candidates = sorted(set(placed.values())) if placed else sorted(alive)
    fitting = [nid for nid in candidates if _fits(total, free[nid], caps.get(nid))]
    if not fitting:
        return None
    chosen = min(fitting, key=lambda nid: (_left_cpu(total, free[nid]), nid))
    return {i: chosen for i in todo}
