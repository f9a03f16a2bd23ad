"""Worker output reaches the driver with a prefix; the session keeps log files."""

from __future__ import annotations

import os
import sys
import time

import skate
from tests.integration._helpers import tapped_std_streams, wait_for


def _run_and_collect(submit, predicate, timeout=10.0):
    """Run submit() with the driver's sys.stdout/stderr tapped (see _helpers.Tap for why not
    capfd; the tap is installed inside the test body, as pytest re-patches sys.stdout between
    setup and call), wait until predicate(out, err) holds; return (result, out, err)."""
    with tapped_std_streams() as (out_tap, err_tap):
        result = submit()
        wait_for(lambda: predicate(out_tap.getvalue(), err_tap.getvalue()), timeout=timeout)
    return result, out_tap.getvalue(), err_tap.getvalue()


def test_print_in_task_reaches_driver_stdout(cluster):
    @skate.remote
    def printer(tag):
        print(f"hello from {tag}")
        print("second line", flush=True)
        return os.getpid()

    pid, out, _ = _run_and_collect(
        lambda: skate.get(printer.remote("marker-5521"), timeout=30), lambda o, e: "second line" in o
    )
    assert f"(printer pid={pid}) hello from marker-5521" in out, out
    assert f"(printer pid={pid}) second line" in out, out


def test_stderr_in_task_reaches_driver_stderr(cluster):
    @skate.remote
    def complainer():
        print("to-stderr-9931", file=sys.stderr, flush=True)
        return os.getpid()

    pid, out, err = _run_and_collect(
        lambda: skate.get(complainer.remote(), timeout=30), lambda o, e: "to-stderr-9931" in e
    )
    assert f"(complainer pid={pid}) to-stderr-9931" in err, err
    assert "to-stderr-9931" not in out


def test_output_without_newline_is_not_lost(cluster):
    @skate.remote
    def partial():
        sys.stdout.write("no-newline-part ")
        sys.stdout.write("then-newline-4410\n")
        sys.stdout.flush()
        return os.getpid()

    pid, out, _ = _run_and_collect(
        lambda: skate.get(partial.remote(), timeout=30), lambda o, e: "then-newline-4410" in o
    )
    assert f"(partial pid={pid}) no-newline-part then-newline-4410" in out, out


def test_task_name_option_is_the_prefix(cluster):
    @skate.remote
    def anonymous():
        print("named-output-3307", flush=True)
        return os.getpid()

    pid, out, _ = _run_and_collect(
        lambda: skate.get(anonymous.options(name="custom_name").remote(), timeout=30),
        lambda o, e: "named-output-3307" in o,
    )
    assert f"(custom_name pid={pid}) named-output-3307" in out, out


def test_many_lines_arrive_in_order(cluster):
    @skate.remote
    def chatty(n):
        for i in range(n):
            print(f"line-{i:04d}")
        return os.getpid()

    pid, out, _ = _run_and_collect(
        lambda: skate.get(chatty.remote(300), timeout=30), lambda o, e: "line-0299" in o
    )
    lines = [ln for ln in out.splitlines() if f"(chatty pid={pid}) line-" in ln]
    assert [ln.rsplit(" ", 1)[1] for ln in lines] == [f"line-{i:04d}" for i in range(300)]


def test_session_dir_has_log_files(cluster):
    @skate.remote
    def noisy():
        print("into the worker log file")
        return os.getpid()

    skate.get(noisy.remote(), timeout=30)
    logs = os.path.join(skate._api._node.session_dir, "logs")
    assert os.path.isdir(logs)

    def names():
        return os.listdir(logs)

    assert any(n.startswith("gcs") for n in names()), names()
    assert any(n.startswith("raylet") for n in names()), names()
    assert any(n.startswith("worker") for n in names()), names()
    # the worker's stdout is also in its log file
    deadline = time.monotonic() + 5
    found = False
    while not found and time.monotonic() < deadline:
        for n in names():
            if n.startswith("worker") and n.endswith(".out"):
                with open(os.path.join(logs, n), errors="replace") as f:
                    if "into the worker log file" in f.read():
                        found = True
        time.sleep(0.05)
    assert found


def test_print_in_a_nested_task_reaches_the_driver(cluster):
    @skate.remote
    def nested_printer():
        print("from-the-grandchild-6612", flush=True)
        return os.getpid()

    @skate.remote
    def middle():
        return skate.get(nested_printer.remote(), timeout=30)

    pid, out, _ = _run_and_collect(
        lambda: skate.get(middle.remote(), timeout=30), lambda o, e: "from-the-grandchild-6612" in o
    )
    assert f"(nested_printer pid={pid}) from-the-grandchild-6612" in out, out
