"""Routing an owner's free to every node that holds a copy of the object."""

from __future__ import annotations

from skate.raylet.copies import CopyTracker, route_frees

A, B, C = b"a" * 4, b"b" * 4, b"c" * 4


def test_free_at_the_primary_reaches_every_puller():
    t = CopyTracker()
    t.served(A, "n2")
    t.served(A, "n3")
    assert route_frees(t, [A], held_here={A}, all_nodes={"n2", "n3", "n4"}) == {
        "n2": [A],
        "n3": [A],
    }
    assert not t.knows(A)


def test_free_at_a_copy_goes_back_to_its_source_and_on_to_its_pullers():
    t = CopyTracker()
    t.pulled(A, "primary")
    t.served(A, "n3")
    assert route_frees(t, [A], held_here={A}, all_nodes={"primary", "n3"}) == {"primary": [A], "n3": [A]}


def test_forwarded_free_is_not_sent_back_to_its_sender():
    t = CopyTracker()
    t.pulled(A, "primary")
    t.served(A, "n3")
    assert route_frees(t, [A], held_here={A}, all_nodes={"primary", "n3"}, sender="primary") == {"n3": [A]}
    # Once handled, the same free arriving again goes nowhere (no loops, no broadcast).
    assert route_frees(t, [A], held_here=set(), all_nodes={"primary", "n3"}, sender="n3") == {}


def test_owner_free_of_an_object_never_seen_here_goes_to_every_node():
    t = CopyTracker()
    assert route_frees(t, [B], held_here=set(), all_nodes={"n2", "n3"}) == {"n2": [B], "n3": [B]}


def test_object_held_here_with_no_copies_goes_nowhere():
    t = CopyTracker()
    assert route_frees(t, [C], held_here={C}, all_nodes={"n2"}) == {}


def test_a_dead_node_is_forgotten():
    t = CopyTracker()
    t.served(A, "n2")
    t.pulled(B, "n2")
    t.node_gone("n2")
    assert route_frees(t, [A, B], held_here={A, B}, all_nodes=set()) == {}
