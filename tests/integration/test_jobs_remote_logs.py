"""The log of a job whose supervisor runs off the head: the dashboard reads it through the
supervisor while the job runs (in pieces, so a big log never makes one big frame), and from
the copy it keeps on the head once the job has ended, even after that node is gone."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

import skate
from skate.cluster_utils import Cluster
from skate.job_submission import JobSubmissionClient
from tests.integration._cluster_helpers import node_args
from tests.integration._job_helpers import wait_for, wait_status

PY = sys.executable
BIG_LINES = 30_000  # about 1.6 MiB of log: more than one piece of read_log


@pytest.fixture
def two_nodes():
    if skate.is_initialized():
        skate.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args=node_args(num_cpus=1, include_dashboard=True))
    try:
        worker = cluster.add_node(**node_args(num_cpus=1, resources={"far_away": 1}))
        head = cluster.head_node
        client = JobSubmissionClient(
            head.dashboard_url, headers={"Authorization": f"Bearer {head.token.decode()}"}
        )
        yield cluster, worker, client
    finally:
        cluster.shutdown()


@pytest.mark.timeout(150)
def test_logs_of_a_job_run_off_the_head(two_nodes, tmp_path):
    cluster, worker, client = two_nodes
    flag = tmp_path / "go"
    script = tmp_path / "job.py"
    script.write_text(
        "import os, time\n"
        "print('first line', flush=True)\n"
        f"while not os.path.exists({str(flag)!r}): time.sleep(0.05)\n"
        f"for i in range({BIG_LINES}): print(f'line {{i:06d}} ' + 'x' * 40)\n"
        "print('last line')\n"
    )
    job_id = client.submit_job(entrypoint=f"{PY} {script}", entrypoint_resources={"far_away": 1})
    wait_for(lambda: "first line" in client.get_job_logs(job_id), 60, "the job's first line")
    info = client.get_job_info(job_id)
    assert info.driver_node_id == worker.node_id != cluster.head_node.node_id

    async def follow() -> str:
        seen = []
        async for chunk in client.tail_job_logs(job_id):
            seen.append(chunk)
        return "".join(seen)

    async def follow_and_release() -> str:
        task = asyncio.ensure_future(follow())
        await asyncio.sleep(0)
        flag.write_text("")
        return await task

    followed = asyncio.run(follow_and_release())
    assert followed.startswith("first line\n") and followed.rstrip().endswith("last line")
    assert followed.count("\nline ") == BIG_LINES
    assert wait_status(client, job_id, ("SUCCEEDED", "FAILED")) == "SUCCEEDED"
    logs = client.get_job_logs(job_id)
    assert logs == followed

    # The node that ran it goes (and its files with it): the head's copy still answers.
    cluster.remove_node(worker)
    assert not os.path.exists(worker.session_dir)
    assert client.get_job_logs(job_id) == followed
    assert client.delete_job(job_id)
    assert not os.path.exists(os.path.join(cluster.head_node.session_dir, "logs", f"job-driver-{job_id}.log"))
