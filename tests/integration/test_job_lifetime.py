"""A job's lifetime: when its driver goes (exits, or is killed), its non-detached actors die,
its placement groups are removed and its objects freed; detached ones stay. Jobs submitted
through the job API get the same cleanup, and every driver shows in list_jobs with its status."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest

import skate
from skate import _api
from skate.job_submission import JobStatus, JobSubmissionClient, JobType
from skate.util.placement_group import placement_group_table
from tests.integration._job_helpers import jobs_cluster_fixture, wait_for, wait_status

DRIVER = textwrap.dedent(
    """
    import os, sys, time, skate
    from skate.util.placement_group import placement_group
    skate.init(address=sys.argv[1], namespace="lifetime")

    @skate.remote(num_cpus=0)
    class Holder:
        def pid(self):
            return os.getpid()

    mine = Holder.options(name="mine_" + sys.argv[2]).remote()
    keeper = Holder.options(name="keeper_" + sys.argv[2], lifetime="detached").remote()
    pg = placement_group([{"CPU": 0.5}], name="pg_" + sys.argv[2])
    pg.wait(30)
    ref = skate.put(b"x" * 2_000_000)  # in shared memory
    pids = skate.get([mine.pid.remote(), keeper.pid.remote()])
    print(*pids, pg.id.hex(), skate.get_runtime_context().get_job_id(), ref.hex(), flush=True)
    if sys.argv[3] == "hang":
        time.sleep(600)
    """
)


@pytest.fixture(scope="module")
def jobs_cluster():
    yield from jobs_cluster_fixture()


def _named(name: str) -> bool:
    try:
        skate.get_actor(name, namespace="lifetime")
        return True
    except ValueError:
        return False


def _pg_state(pg_hex: str) -> str:
    return (placement_group_table().get(pg_hex) or {}).get("state", "GONE")


def _object_rows(object_hex: str) -> list[dict]:
    from skate.util.state import list_objects

    return list_objects([("object_id", "=", object_hex)])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["exits", "killed"])
def test_a_drivers_actors_and_groups_go_with_it(jobs_cluster, how, tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    proc = subprocess.Popen(
        [sys.executable, str(script), _api._node.address, how, "exit" if how == "exits" else "hang"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline().split()
    assert len(line) == 5, line
    mine_pid, keeper_pid, pg_hex, job_id, object_hex = int(line[0]), int(line[1]), line[2], line[3], line[4]
    if how == "killed":  # (a driver that exits may already be gone)
        assert _pg_state(pg_hex) == "CREATED"
        assert _object_rows(object_hex)  # held by the driver while it lives
    client = JobSubmissionClient(jobs_cluster)
    listed = {j.job_id: j for j in client.list_jobs() if j.type is JobType.DRIVER}
    assert job_id in listed
    if how == "killed":
        assert listed[job_id].status is JobStatus.RUNNING
        proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    proc.stdout.close()
    wait_for(lambda: not _named(f"mine_{how}"), what="the driver's actor to die")
    wait_for(lambda: _pg_state(pg_hex) in ("REMOVED", "GONE"), what="the driver's group to go")
    wait_for(lambda: not _object_rows(object_hex), what="the driver's object to be freed")
    import psutil

    wait_for(
        lambda: not psutil.pid_exists(mine_pid) or psutil.Process(mine_pid).status() == "zombie", what="pid"
    )
    assert _named(f"keeper_{how}") and psutil.pid_exists(keeper_pid)  # detached: stays
    skate.kill(skate.get_actor(f"keeper_{how}", namespace="lifetime"))
    driver = {j.job_id: j for j in client.list_jobs()}[job_id]
    assert driver.type is JobType.DRIVER and driver.status is JobStatus.SUCCEEDED and driver.end_time


@pytest.mark.timeout(120)
def test_a_submitted_jobs_actors_go_when_it_ends(jobs_cluster, tmp_path):
    client = JobSubmissionClient(jobs_cluster)
    (tmp_path / "driver.py").write_text(DRIVER)
    job_id = client.submit_job(
        entrypoint=f"{sys.executable} driver.py auto submitted exit",
        runtime_env={"working_dir": str(tmp_path)},
    )
    assert wait_status(client, job_id, ("SUCCEEDED", "FAILED")) == "SUCCEEDED", client.get_job_logs(job_id)
    _, _, pg_hex, driver_job, object_hex = client.get_job_logs(job_id).split()
    wait_for(lambda: not _named("mine_submitted"), what="the job's actor to die")
    wait_for(lambda: _pg_state(pg_hex) in ("REMOVED", "GONE"), what="the job's group to go")
    wait_for(lambda: not _object_rows(object_hex), what="the job's object to be freed")
    assert _named("keeper_submitted")
    skate.kill(skate.get_actor("keeper_submitted", namespace="lifetime"))
    info = client.get_job_info(job_id)
    assert info.job_id == driver_job and info.type is JobType.SUBMISSION
    # the job's driver is listed once, as the submission it belongs to
    assert [j.submission_id for j in client.list_jobs() if j.job_id == driver_job] == [job_id]
    assert json.dumps(info.metadata) == "{}"
