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
