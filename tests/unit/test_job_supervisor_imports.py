"""A job's supervisor starts fast: the worker that runs it imports the supervisor module
without the dashboard's web server (aiohttp cost most of a job's start-up time)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.timeout(60)
def test_the_supervisor_module_does_not_import_the_web_server():
    code = (
        "import sys\n"
        "import skate.dashboard.modules.job.supervisor\n"
        "names = ('aiohttp', 'skate.dashboard.server', 'skate.dashboard.modules.job.routes')\n"
        "heavy = sorted(m for m in names if m in sys.modules)\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
