"""Counting refs across the client's wire (skate.client.refs): exact, no I/O."""

from __future__ import annotations

from skate.client.refs import ClientRefTable, HeldRefs


def test_last_local_ref_releases_the_shipments_seen():
    t = ClientRefTable()
    t.arrived([b"a"])
    t.add_local(b"a")
    t.add_local(b"a")  # a copy
    t.remove_local(b"a")
    assert t.take_releases() == []
    t.remove_local(b"a")
    assert t.take_releases() == [[b"a", 1]]
    assert not t.has(b"a")


def test_a_shipment_in_flight_keeps_the_proxy_hold():
    held = HeldRefs()
    client = ClientRefTable()
    held.ship(b"x", "ref-x")
    client.arrived([b"x"])
    client.add_local(b"x")
    held.ship(b"x", "ref-x")  # shipped again while the client drops its copy
    client.remove_local(b"x")
    (pair,) = client.take_releases()
    assert held.release(*pair) is None and held.get(b"x") == "ref-x"
    client.arrived([b"x"])  # the second shipment lands
    client.add_local(b"x")
    client.remove_local(b"x")
    (pair,) = client.take_releases()
    assert held.release(*pair) == "ref-x" and len(held) == 0


def test_settle_releases_shipments_no_local_ref_took():
    t = ClientRefTable()
    t.arrived([b"a", b"b"])
    t.add_local(b"a")
    t.settle([b"a", b"b"])
    assert t.take_releases() == [[b"b", 1]]
    assert t.live() == 1


def test_unknown_release_is_ignored():
    held = HeldRefs()
    assert held.release(b"nope", 1) is None
    held.ship(b"a", 1)
    assert held.clear() == [1] and len(held) == 0
