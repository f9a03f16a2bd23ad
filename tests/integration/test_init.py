"""init() and shutdown() with real cluster processes."""

from __future__ import annotations

import logging
import os
import re

import pytest

from tests.integration._helpers import tapped_std_streams, wait_for

ADDRESS = re.compile(r"^[0-9A-Za-z.\-]+:\d{1,5}$")


def _no_leftovers() -> None:
    from tests.conftest import assert_no_leftovers

    assert_no_leftovers()


def test_init_returns_context_with_address(fresh):
    skate = fresh
    assert not skate.is_initialized()
    ctx = skate.init(num_cpus=1)
    try:
        assert skate.is_initialized()
        assert ADDRESS.match(ctx["address"]), ctx["address"]
        assert ADDRESS.match(ctx.address_info["address"]), ctx.address_info
        assert ctx.address_info["address"] == ctx["address"]
        host, port = ctx["address"].rsplit(":", 1)
        assert 0 < int(port) < 65536
        assert os.path.isdir(ctx["session_dir"])

        @skate.remote
        def one():
            return 1

        assert skate.get(one.remote(), timeout=30) == 1
    finally:
        skate.shutdown()
    assert not skate.is_initialized()
    _no_leftovers()


def test_second_init_raises_and_ignore_reinit_error(fresh):
    skate = fresh
    ctx = skate.init(num_cpus=1)
    with pytest.raises(RuntimeError):
        skate.init(num_cpus=1)
    again = skate.init(num_cpus=1, ignore_reinit_error=True)
    assert again["address"] == ctx["address"]
    assert skate.is_initialized()
    # The first cluster is still the one in use.
    assert skate.cluster_resources()["CPU"] == 1
    skate.shutdown()
    assert not skate.is_initialized()
    _no_leftovers()


def test_shutdown_is_idempotent_and_reinit_works(fresh):
    skate = fresh
    skate.shutdown()  # not initialized: a no-op
    skate.init(num_cpus=1)
    skate.shutdown()
    skate.shutdown()
    _no_leftovers()
    skate.init(num_cpus=2)

    @skate.remote
    def add(a, b):
        return a + b

    assert skate.get(add.remote(2, 3), timeout=30) == 5
    assert skate.cluster_resources()["CPU"] == 2
    skate.shutdown()
    _no_leftovers()


def test_init_options_accepted(fresh):
    skate = fresh
    store = 64 * 1024 * 1024
    skate.init(
        num_cpus=2,
        num_gpus=1,
        resources={"special": 3},
        object_store_memory=store,
        namespace="my-namespace",
        logging_level=logging.WARNING,
        log_to_driver=False,
        include_dashboard=False,
    )
    try:
        total = skate.cluster_resources()
        assert total["CPU"] == 2
        assert total["GPU"] == 1
        assert total["special"] == 3
        assert total["object_store_memory"] == store
        assert skate.get_runtime_context().namespace == "my-namespace"

        @skate.remote(resources={"special": 1})
        def quiet():
            print("should-not-reach-the-driver-7781", flush=True)
            return skate.get_runtime_context().namespace

        # The worker's lines still come to this process; log_to_driver=False means they are not
        # printed. Record each batch after its handler ran, so the check below follows it.
        core = skate._api._core()
        print_logs = core.handlers["logs"]
        handled: list[str] = []

        def recording(conn, payload):
            print_logs(conn, payload)
            handled.extend(payload["lines"])

        core.handlers["logs"] = recording
        with tapped_std_streams() as (out, err):
            assert skate.get(quiet.remote(), timeout=30) == "my-namespace"
            assert wait_for(lambda: any("should-not-reach-the-driver-7781" in ln for ln in handled)), handled
        assert "should-not-reach-the-driver-7781" not in out.getvalue() + err.getvalue()
    finally:
        skate.shutdown()
    _no_leftovers()


def test_default_namespace_is_a_string(fresh):
    skate = fresh
    skate.init(num_cpus=1)
    try:
        ns = skate.get_runtime_context().namespace
        assert isinstance(ns, str) and ns
    finally:
        skate.shutdown()


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"num_cpus": -1}, ValueError),
        ({"num_gpus": -2}, ValueError),
        ({"object_store_memory": -5}, ValueError),
        ({"resources": {"CPU": 1}}, ValueError),
        ({"resources": {"GPU": 1}}, ValueError),
        ({"resources": {"custom": -1}}, ValueError),
        ({"not_an_option": 1}, (TypeError, ValueError, RuntimeError)),
        ({"namespace": 5}, (TypeError, ValueError)),
    ],
)
def test_bad_init_inputs_raise_and_start_nothing(fresh, kwargs, exc):
    skate = fresh
    with pytest.raises(exc):
        skate.init(**kwargs)
    assert not skate.is_initialized()
    _no_leftovers()


def test_unknown_init_kwarg_is_named(fresh):
    skate = fresh
    with pytest.raises((TypeError, ValueError, RuntimeError), match="not_an_option"):
        skate.init(not_an_option=1)
    assert not skate.is_initialized()


def test_with_statement_shuts_down_at_exit(fresh):
    skate = fresh
    with skate.init(num_cpus=1) as ctx:
        assert skate.is_initialized()
        session_dir = ctx["session_dir"]
        assert os.path.isdir(session_dir)

        @skate.remote
        def double(x):
            return 2 * x

        assert skate.get(double.remote(21), timeout=30) == 42
    assert not skate.is_initialized()
    assert not os.path.exists(session_dir)
    _no_leftovers()


def test_with_statement_shuts_down_on_exception(fresh):
    skate = fresh
    with pytest.raises(ZeroDivisionError):
        with skate.init(num_cpus=1):
            1 / 0  # noqa: B018
    assert not skate.is_initialized()
    _no_leftovers()


def test_introspection_before_init_raises(fresh):
    skate = fresh
    assert not skate.is_initialized()
    for call in (skate.nodes, skate.cluster_resources, skate.available_resources):
        with pytest.raises(Exception) as info:  # noqa: B017
            call()
        assert "init" in str(info.value)
    assert not skate.is_initialized()
