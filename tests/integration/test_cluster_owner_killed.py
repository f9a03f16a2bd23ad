"""A process owning a multi-node Cluster is SIGKILLed: every node's processes and files go."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.integration._helpers import wait_for

SCRIPT = """
import time
from skate.cluster_utils import Cluster
c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 100 * 2**20})
n = c.add_node(num_cpus=1, object_store_memory=100 * 2**20)
print(c.head_node.session_dir, n.session_dir, flush=True)
time.sleep(120)
"""


def test_sigkilled_owner_leaves_no_node_behind():
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    try:
        line = proc.stdout.readline().split()
        assert len(line) == 2, "the owner printed no session directories"
        assert all(os.path.isdir(d) for d in line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    start = time.monotonic()
    assert wait_for(lambda: not any(os.path.exists(d) for d in line), timeout=20), line
    assert time.monotonic() - start < 20
