"""Where the GCS places an actor: Ray's default "hybrid" policy, as a pure function.

Among the alive nodes whose total resources can hold the actor's placement shape:

- a node's score is its critical utilization (the highest used/total over CPU and GPU), or 0
  while that is below the spread threshold (0.5): lightly loaded nodes are all equally good;
- nodes with the shape free now come before nodes that only could hold it;
- the preferred node (the owner's) wins while its score is the lowest, which packs work onto it
  until it is half used; otherwise the lowest score wins, ties broken by node id;
- a request that needs no GPU goes to a node without GPUs when one has room.

Ray draws among the top 20% of nodes at random; this picks the first of them, so placement is
deterministic (the same cluster state gives the same node).

Load counts actors, not just what nodes report: an actor counts as its placement shape on its
node from the moment it is sent there, even a default actor that holds no CPU once running.
So many default actors spread over the nodes instead of piling onto the first one.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

from skate.raylet import resources as res

SPREAD_THRESHOLD = 0.5
CRITICAL = ("CPU", "GPU")


@dataclass
class NodeLoad:
    """One alive node as the GCS sees it (amounts in fixed point, see raylet.resources)."""

    node_id: str
    total: dict[str, int]
    available: dict[str, int]  # as last reported by the node's raylet
    actors_placed: dict[str, int] = field(default_factory=dict)  # placement shapes of its actors
    actors_held: dict[str, int] = field(default_factory=dict)  # what those actors hold once running

    def utilization(self) -> float:
        """Highest used/total over the critical resources; actors count at their placement shape.

        What the node reports as used includes what its actors hold (once their leases were
        granted); that part is replaced by their placement shapes, which count at once.
        """
        worst = 0.0
        for name in CRITICAL:
            total = self.total.get(name, 0)
            if total <= 0:
                continue
            used = total - max(self.available.get(name, 0), 0)
            tasks = max(used - self.actors_held.get(name, 0), 0)
            worst = max(worst, (tasks + self.actors_placed.get(name, 0)) / total)
        return worst

    def score(self, threshold: float) -> float:
        util = self.utilization()
        return 0.0 if util < threshold else util


def choose_node(
    shape: dict[str, int],
    nodes: list[NodeLoad],
    preferred: str | None = None,
    threshold: float = SPREAD_THRESHOLD,
    soft: set[str] | None = None,
) -> str | None:
    """The node for an actor of placement `shape`, or None if no node can ever hold it.

    `soft` (node ids matching a label constraint's soft expressions) orders the choice as Ray's
    label policy does: a soft-matching node with the shape free, then any node with it free,
    then a soft-matching node that could hold it, then any node that could.
    """
    groups = [nodes] if soft is None else [[n for n in nodes if n.node_id in soft], nodes]
    for require_available in (True, False):
        for group in groups:
            choice = _pick(shape, group, preferred, threshold, require_available)
            if choice is not None:
                return choice
    return None


def _pick(
    shape: dict[str, int],
    nodes: list[NodeLoad],
    preferred: str | None,
    threshold: float,
    require_available: bool,
) -> str | None:
    """A request that needs no GPU goes to a node without GPUs when one has room."""
    if not shape.get("GPU"):
        no_gpu = [n for n in nodes if not n.total.get("GPU")]
        choice = _hybrid(shape, no_gpu, preferred, threshold, require_available=True)
        if choice is not None:
            return choice
    return _hybrid(shape, nodes, preferred, threshold, require_available)


def _hybrid(
    shape: dict[str, int],
    nodes: list[NodeLoad],
    preferred: str | None,
    threshold: float,
    require_available: bool,
) -> str | None:
    feasible = [n for n in nodes if res.fits(shape, n.total)]
    available = [n for n in feasible if res.fits(shape, n.available)]
    group = available or ([] if require_available else feasible)
    if not group:
        return None
    scored = sorted((n.score(threshold), n.node_id) for n in group)
    best_score = scored[0][0]
    for score, node_id in scored:
        if node_id == preferred and score <= best_score:
            return node_id
    return scored[0][1]


class PlacementIndex:
    """The alive nodes as actor placement sees them, kept in score order, so a placement looks
    at the few best nodes instead of scoring all of them (issue 19: with 1,000 nodes, scoring
    every node for every actor made placement cost milliseconds).

    It holds what `choose_node` is given (one `NodeLoad` per node: totals and availability as
    the node table says, plus the placement shapes and holds of the actors sent there) and
    answers as `choose_node` does without a soft label set. The GCS tells it of every change:
    `set_node` when a node joins or its resources change, `remove_node` when it dies,
    `add_actor`/`remove_actor` when an actor is sent to a node or leaves it.
    """

    def __init__(self) -> None:
        self.nodes: dict[str, NodeLoad] = {}
        # Per node, (placement shapes, holds) of the actors sent there; kept for nodes not (or
        # not yet) in `nodes` too: after a GCS restart actors are counted before nodes return.
        self._loads: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
        self._order: dict[float, list[tuple[float, str]]] = {}  # per threshold: (score, id), sorted
        self._gpu_nodes = 0

    # -- changes ----------------------------------------------------------------------
    def set_node(self, node_id: str, total: dict[str, int], available: dict[str, int]) -> None:
        """A node joined, or its totals or availability changed (its actors' load stays)."""
        node = self.nodes.get(node_id)
        if node is None:
            placed, held = self._loads.setdefault(node_id, ({}, {}))
            node = self.nodes[node_id] = NodeLoad(node_id, total, available, placed, held)
            self._gpu_nodes += bool(total.get("GPU"))
            self._rekey(node)
            return
        self._unkey(node)
        self._gpu_nodes += bool(total.get("GPU")) - bool(node.total.get("GPU"))
        node.total, node.available = total, available
        self._rekey(node)

    def remove_node(self, node_id: str) -> None:
        node = self.nodes.pop(node_id, None)
        if node is not None:
            self._unkey(node)
            self._gpu_nodes -= bool(node.total.get("GPU"))

    def add_actor(self, node_id: str, placed: dict[str, int], held: dict[str, int], sign: int = 1) -> None:
        """An actor of placement shape `placed` holding `held` was sent to the node (sign -1: it
        left)."""
        node = self.nodes.get(node_id)
        if node is not None:
            self._unkey(node)
        load = self._loads.setdefault(node_id, ({}, {}))
        for amounts, change in zip(load, (placed, held)):
            for k, v in change.items():
                left = amounts.get(k, 0) + sign * v
                if left:
                    amounts[k] = left
                else:
                    amounts.pop(k, None)
        if node is not None:
            self._rekey(node)
        elif not load[0] and not load[1]:
            del self._loads[node_id]

    def remove_actor(self, node_id: str, placed: dict[str, int], held: dict[str, int]) -> None:
        self.add_actor(node_id, placed, held, sign=-1)

    # -- the decision -----------------------------------------------------------------
    def choose(
        self,
        shape: dict[str, int],
        preferred: str | None = None,
        threshold: float = SPREAD_THRESHOLD,
        usable: Callable[[str], bool] | None = None,
    ) -> str | None:
        """`choose_node(shape, <the usable nodes>, preferred, threshold)`, in the same order of
        preference: a node without GPUs with room (for a shape needing none), any node with room,
        any node that could ever hold it; within each, the lowest (score, node id), the
        preferred node winning ties with the best score."""
        order = self._sorted(threshold)
        steps: list[Callable[[NodeLoad], bool]] = []
        if not shape.get("GPU") and self._gpu_nodes:
            steps.append(
                lambda n: not n.total.get("GPU") and res.fits(shape, n.total) and res.fits(shape, n.available)
            )
        steps.append(lambda n: res.fits(shape, n.total) and res.fits(shape, n.available))
        steps.append(lambda n: res.fits(shape, n.total))
        for ok in steps:
            best = next(
                (key for key in order if (usable is None or usable(key[1])) and ok(self.nodes[key[1]])), None
            )
            if best is None:
                continue
            score, node_id = best
            pref = self.nodes.get(preferred or "")
            if (
                pref is not None
                and (usable is None or usable(pref.node_id))
                and ok(pref)
                and pref.score(threshold) <= score
            ):
                return pref.node_id
            return node_id
        return None

    def loads(self) -> dict[str, tuple[dict[str, int], dict[str, int]]]:
        """Per node with actors: (placement shapes, holds) of its actors, as `choose_node`'s
        callers pass them."""
        return {nid: load for nid, load in self._loads.items() if load[0] or load[1]}

    # -- the order ----------------------------------------------------------------------
    def _sorted(self, threshold: float) -> list[tuple[float, str]]:
        order = self._order.get(threshold)
        if order is None:
            order = self._order[threshold] = sorted(
                (n.score(threshold), n.node_id) for n in self.nodes.values()
            )
        return order

    def _unkey(self, node: NodeLoad) -> None:
        """Take the node out of every order (before what its score depends on changes)."""
        for threshold, order in self._order.items():
            key = (node.score(threshold), node.node_id)
            i = bisect.bisect_left(order, key)
            if i < len(order) and order[i] == key:
                del order[i]

    def _rekey(self, node: NodeLoad) -> None:
        """Put the node back in every order, at its current score."""
        for threshold, order in self._order.items():
            bisect.insort(order, (node.score(threshold), node.node_id))
