"""Which other nodes hold copies of an object, so an owner's free reaches all of them; no I/O.

A raylet records the node each pulled copy came from and the nodes that pulled from it.
Together these link every copy of an object into a tree rooted at its primary. When the owner
frees an object (at its own raylet), the free travels along that tree: each node frees its
copy and passes the free to its neighbours but the one it came from. The owner's raylet may
know nothing of the object (its primary is on another node and it never pulled a copy); then
it tells every node, since one of them has the primary.
"""

from __future__ import annotations


class CopyTracker:
    def __init__(self) -> None:
        self.source: dict[bytes, str] = {}  # pulled copies here: the node each came from
        self.pullers: dict[bytes, set[str]] = {}  # objects served: the nodes that pulled them

    def pulled(self, oid: bytes, from_node: str) -> None:
        """A copy of `oid` was pulled here from `from_node`."""
        self.source[oid] = from_node

    def served(self, oid: bytes, to_node: str) -> None:
        """`to_node` is pulling a copy of `oid` from here."""
        if to_node:
            self.pullers.setdefault(oid, set()).add(to_node)

    def knows(self, oid: bytes) -> bool:
        return oid in self.source or oid in self.pullers

    def freed(self, oid: bytes, sender: str | None = None) -> set[str]:
        """`oid` was freed (told by `sender`, or by its owner if None): the nodes to pass the
        free on to. The object is forgotten, so a free that comes back goes nowhere."""
        nodes = self.pullers.pop(oid, set())
        source = self.source.pop(oid, None)
        if source is not None:
            nodes.add(source)
        nodes.discard(sender or "")
        return nodes

    def node_gone(self, node_id: str) -> None:
        """A node died: it holds no copies any more."""
        for nodes in self.pullers.values():
            nodes.discard(node_id)
        for oid in [o for o, n in self.source.items() if n == node_id]:
            del self.source[oid]


def route_frees(
    tracker: CopyTracker,
    oids: list[bytes],
    held_here: set[bytes],
    all_nodes: set[str],
    sender: str | None = None,
) -> dict[str, list[bytes]]:
    """Per node, the objects whose free it must hear about.

    `held_here`: the freed objects this node's store had. A free from the owner (no sender)
    of an object this node neither held nor tracked goes to every node in `all_nodes`.
    """
    out: dict[str, list[bytes]] = {}
    for oid in oids:
        known = tracker.knows(oid) or oid in held_here
        targets = tracker.freed(oid, sender)
        if sender is None and not known:
            targets = set(all_nodes)
        for node in targets:
            out.setdefault(node, []).append(oid)
    return out
