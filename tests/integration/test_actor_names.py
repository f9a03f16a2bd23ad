"""Named actors and namespaces: uniqueness, lookup, get_if_exists, listing."""

from __future__ import annotations

import os

import pytest

import skate
from tests.integration._helpers import wait_for


@skate.remote
class Box:
    def __init__(self, label):
        self.label = label

    def label_of(self):
        return self.label

    def pid(self):
        return os.getpid()


@skate.remote
def lookup_from_task(name, namespace=None):
    handle = skate.get_actor(name, namespace=namespace)
    return skate.get(handle.label_of.remote(), timeout=30)


@skate.remote
def lookup_missing_from_task(name):
    try:
        skate.get_actor(name)
    except ValueError as exc:
        return f"ValueError: {exc}"
    return "found"


def _gone(name, namespace=None):
    try:
        skate.get_actor(name, namespace=namespace)
    except ValueError:
        return True
    return False


def test_get_actor_by_name(cluster):
    a = Box.options(name="names-a").remote("A")
    got = skate.get_actor("names-a")
    assert isinstance(got, skate.ActorHandle)
    assert got._actor_id == a._actor_id
    assert skate.get(got.label_of.remote(), timeout=30) == "A"
    ns = skate.get_runtime_context().namespace
    assert skate.get_actor("names-a", namespace=ns)._actor_id == a._actor_id
    # a task of this job sees the same namespace
    assert skate.get(lookup_from_task.remote("names-a"), timeout=30) == "A"


def test_get_actor_of_a_missing_name_raises(cluster):
    with pytest.raises(ValueError, match="no-such-actor"):
        skate.get_actor("no-such-actor")
    with pytest.raises(ValueError):
        skate.get_actor("no-such-actor", namespace="elsewhere")
    assert skate.get(lookup_missing_from_task.remote("no-such-actor"), timeout=30).startswith("ValueError")
    with pytest.raises(ValueError):
        skate.get_actor("")


def test_name_is_unique_within_a_namespace(cluster):
    first = Box.options(name="names-unique").remote("first")
    assert skate.get(first.label_of.remote(), timeout=30) == "first"
    with pytest.raises(ValueError, match="names-unique"):
        Box.options(name="names-unique").remote("second")
    # the failed attempt changed nothing
    assert skate.get(skate.get_actor("names-unique").label_of.remote(), timeout=30) == "first"
    # the same name in another namespace is a different actor
    other = Box.options(name="names-unique", namespace="names-other").remote("other")
    assert skate.get(other.label_of.remote(), timeout=30) == "other"
    with pytest.raises(ValueError):
        Box.options(name="names-unique", namespace="names-other").remote("third")


def test_namespaces_isolate_names(cluster):
    a = Box.options(name="iso", namespace="ns-one").remote("one")
    b = Box.options(name="iso", namespace="ns-two").remote("two")
    assert a._actor_id != b._actor_id
    h1 = skate.get_actor("iso", namespace="ns-one")
    h2 = skate.get_actor("iso", namespace="ns-two")
    assert skate.get([h1.label_of.remote(), h2.label_of.remote()], timeout=30) == ["one", "two"]
    # not visible from this driver's own (anonymous) namespace
    with pytest.raises(ValueError):
        skate.get_actor("iso")
    with pytest.raises(ValueError):
        skate.get_actor("iso", namespace="ns-three")
    assert skate.get(lookup_from_task.remote("iso", "ns-two"), timeout=30) == "two"
    assert skate.get(lookup_missing_from_task.remote("iso"), timeout=30).startswith("ValueError")


def test_get_if_exists(cluster):
    a = Box.options(name="names-gie", get_if_exists=True).remote("original")
    pid = skate.get(a.pid.remote(), timeout=30)
    b = Box.options(name="names-gie", get_if_exists=True).remote("ignored")
    assert b._actor_id == a._actor_id
    assert skate.get(b.pid.remote(), timeout=30) == pid
    assert skate.get(b.label_of.remote(), timeout=30) == "original"
    # in another namespace it creates a new one
    c = Box.options(name="names-gie", namespace="names-gie-ns", get_if_exists=True).remote("new")
    assert c._actor_id != a._actor_id
    assert skate.get(c.label_of.remote(), timeout=30) == "new"


def test_name_is_free_again_after_the_actor_is_killed(cluster):
    a = Box.options(name="names-reuse").remote("old")
    assert skate.get(a.label_of.remote(), timeout=30) == "old"
    skate.kill(a)
    assert wait_for(lambda: _gone("names-reuse"), timeout=10)
    b = Box.options(name="names-reuse").remote("new")
    assert skate.get(b.label_of.remote(), timeout=30) == "new"
    assert skate.get_actor("names-reuse")._actor_id == b._actor_id


def test_list_named_actors(cluster):
    here = [Box.options(name=f"listed-{i}").remote(i) for i in range(2)]
    there = Box.options(name="listed-there", namespace="list-ns").remote("x")
    anonymous = Box.remote("anonymous")
    skate.get([h.label_of.remote() for h in [*here, there, anonymous]], timeout=30)
    names = skate.util.list_named_actors()
    assert isinstance(names, list)
    assert {"listed-0", "listed-1"} <= set(names)
    assert "listed-there" not in names
    everything = skate.util.list_named_actors(all_namespaces=True)
    assert all(isinstance(d, dict) and set(d) >= {"name", "namespace"} for d in everything)
    ns = skate.get_runtime_context().namespace
    assert {"name": "listed-0", "namespace": ns} in everything
    assert {"name": "listed-1", "namespace": ns} in everything
    assert {"name": "listed-there", "namespace": "list-ns"} in everything
    # a dead actor is no longer listed
    skate.kill(here[0])
    assert wait_for(lambda: "listed-0" not in skate.util.list_named_actors(), timeout=10)
    assert "listed-1" in skate.util.list_named_actors()
