"""The code base is lint-clean, formatted and type-checked (ruff and mypy, as configured in
pyproject.toml). Each tool runs as a subprocess from the project root; a failure shows its
output."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tool: str, *args: str, timeout: float) -> None:
    if importlib.util.find_spec(tool) is None:
        pytest.fail(f"{tool} is not installed: pip install -e '.[test]'")
    out = subprocess.run(
        [sys.executable, "-m", tool, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if out.returncode != 0:
        pytest.fail(f"`{tool} {' '.join(args)}` exited {out.returncode}:\n{out.stdout}{out.stderr}", False)


@pytest.mark.timeout(150)
def test_ruff_check():
    _run("ruff", "check", "skate", "tests", timeout=120)


@pytest.mark.timeout(150)
def test_ruff_format():
    _run("ruff", "format", "--check", "skate", "tests", timeout=120)


@pytest.mark.timeout(330)
def test_mypy():
    _run("mypy", "skate", timeout=300)
