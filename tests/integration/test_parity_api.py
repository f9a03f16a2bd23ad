"""Ray parity of the public API layer, on a real cluster."""

from __future__ import annotations

import pytest

import skate


@skate.remote
class Account:
    RATE = 0.05

    def __init__(self, owner, balance=0):
        self.owner = owner
        self.balance = balance

    def deposit(self, amount, *, note=""):
        self.balance += amount
        return self.balance

    @staticmethod
    def interest(amount):
        return amount * Account.RATE

    @classmethod
    def kind(cls):
        return cls.__name__


@skate.remote
def call_with_bad_arguments(handle):
    """Inside a task, with a handle that came in pickled: a bad call fails at .remote()."""
    try:
        handle.deposit.remote(1, 2)
    except TypeError as exc:
        return f"TypeError: {exc}"
    return "sent"


# -- item 1: arguments are bound at .remote() ------------------------------------------


@pytest.mark.timeout(60)
def test_bad_constructor_arguments_fail_at_remote_and_register_nothing(cluster):
    with pytest.raises(TypeError, match="missing a required argument: 'owner'"):
        Account.options(name="parity-bad-ctor").remote()
    # Nothing was registered: the name is still free and get_actor finds no actor.
    with pytest.raises(ValueError):
        skate.get_actor("parity-bad-ctor")
    acct = Account.options(name="parity-bad-ctor").remote("ann", balance=5)
    assert skate.get(acct.deposit.remote(5), timeout=30) == 10
    skate.kill(acct)


@pytest.mark.timeout(60)
def test_bad_method_arguments_fail_at_remote_everywhere(cluster):
    acct = Account.options(name="parity-bad-method").remote("bob")
    with pytest.raises(TypeError, match="too many positional arguments"):
        acct.deposit.remote(1, 2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'memo'"):
        acct.deposit.remote(1, memo="x")
    # A handle that travelled to a task (pickled) checks there too.
    out = skate.get(call_with_bad_arguments.remote(acct), timeout=30)
    assert out.startswith("TypeError") and "too many positional arguments" in out
    # A handle from get_actor (its method table came through the GCS) checks as well.
    again = skate.get_actor("parity-bad-method")
    with pytest.raises(TypeError, match="missing a required argument: 'amount'"):
        again.deposit.remote()
    assert skate.get(again.deposit.remote(3, note="ok"), timeout=30) == 3
    skate.kill(acct)


# -- item 2: ActorClass behaves like the user's class ----------------------------------


@pytest.mark.timeout(60)
def test_class_members_reachable_from_the_driver_and_inside_the_actor(cluster):
    assert Account.RATE == 0.05
    assert Account.interest(100) == 5.0
    assert Account.kind() == "Account"
    acct = Account.remote("cy", 100)
    # Inside the actor the module-level name is the actor class: its members work there too.
    assert skate.get(acct.interest.remote(200), timeout=30) == 10.0
    assert skate.get(acct.kind.remote(), timeout=30) == "Account"
    skate.kill(acct)


# -- item 4: validation and error types ----------------------------------------------


@pytest.mark.timeout(60)
def test_a_taken_name_gives_rays_wording(cluster):
    first = Account.options(name="parity-dup").remote("dee")
    with pytest.raises(ValueError) as info:
        Account.options(name="parity-dup").remote("eve")
    msg = str(info.value)
    assert msg.startswith("The name parity-dup (namespace=")
    assert "is already taken. Please use a different name or get the existing actor using" in msg
    assert "get_actor('parity-dup'" in msg
    skate.kill(first)


@pytest.mark.timeout(60)
def test_validation_on_a_live_cluster(cluster):
    with pytest.raises(ValueError, match="only supported for actors"):
        skate.kill(skate.put(1))
    with pytest.raises(ValueError, match="namespace"):
        skate.get_actor("parity-nobody", namespace="")
    with pytest.raises(TypeError, match="namespace"):
        Account.options(namespace=3).remote("x")
    assert skate.wait([], num_returns=3) == ([], [])
