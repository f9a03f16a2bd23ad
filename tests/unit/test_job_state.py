"""The job state machine (skate._job_state): every allowed and refused transition, exactly."""

from __future__ import annotations

import pytest

from skate import _job_state
from skate._job_state import ALLOWED, JobStateError, JobStatus, apply, exit_code_for, new_record


def _record(status: JobStatus = JobStatus.PENDING) -> dict:
    record = new_record(
        "job_1", "python app.py", 1000, metadata={"k": "v"}, runtime_env={"env_vars": {"A": "1"}}
    )
    record["status"] = status.value
    return record


def test_new_record_is_pending_with_rays_fields():
    r = new_record("job_1", "python app.py", 1000)
    assert r["status"] == "PENDING" and r["type"] == "SUBMISSION"
    assert r["submission_id"] == "job_1" and r["entrypoint"] == "python app.py"
    assert r["start_time"] == 1000 and r["end_time"] is None and r["driver_exit_code"] is None
    assert r["message"] == _job_state.PENDING_MESSAGE
    assert r["metadata"] == {} and r["runtime_env"] == {}


@pytest.mark.parametrize("entrypoint", ["", "   ", "\n"])
def test_empty_entrypoint_is_refused(entrypoint):
    with pytest.raises(ValueError, match="entrypoint must be a non-empty"):
        new_record("job_1", entrypoint, 0)


def test_bad_fields_are_refused_naming_them():
    with pytest.raises(TypeError, match="entrypoint must be a str"):
        new_record("job_1", ["python"], 0)
    with pytest.raises(TypeError, match="metadata"):
        new_record("job_1", "x", 0, metadata={"a": 1})
    with pytest.raises(ValueError, match="entrypoint_num_cpus"):
        new_record("job_1", "x", 0, entrypoint_num_cpus=-1)
    with pytest.raises(ValueError, match="entrypoint_resources"):
        new_record("job_1", "x", 0, entrypoint_resources={"a": "many"})
    for bad in ("", "a/b", "../x", "x" * 129, 7, None, "sp ace"):
        with pytest.raises(ValueError, match="submission_id"):
            new_record(bad, "x", 0)


def test_started_then_exit_zero_succeeds():
    r = apply(_record(), "started", 2000, node_id="n1")
    assert r["status"] == "RUNNING" and r["driver_node_id"] == "n1" and r["end_time"] is None
    r = apply(r, "exited", 3000, exit_code=0)
    assert r["status"] == "SUCCEEDED" and r["end_time"] == 3000 and r["driver_exit_code"] == 0
    assert r["message"] == _job_state.SUCCEEDED_MESSAGE
    assert r["start_time"] == 1000 and r["metadata"] == {"k": "v"}  # kept


def test_nonzero_exit_fails_quoting_the_log_tail():
    running = apply(_record(), "started", 2000)
    r = apply(running, "exited", 3000, exit_code=3, log_tail="x" * 30_000 + "boom")
    assert r["status"] == "FAILED" and r["driver_exit_code"] == 3
    assert r["message"].startswith("Job entrypoint command failed with exit code 3")
    assert r["message"].endswith("boom") and len(r["message"]) < 20_200
    assert r["error_type"] == "JOB_ENTRYPOINT_COMMAND_ERROR"
    no_log = apply(running, "exited", 3000, exit_code=1)
    assert no_log["message"] == "Job entrypoint command failed with exit code 1"


def test_exit_after_stop_is_stopped_whatever_the_code():
    running = apply(_record(), "started", 2000)
    for code in (0, 1, 143, 137):
        r = apply(running, "exited", 3000, exit_code=code, stop_requested=True)
        assert r["status"] == "STOPPED" and r["message"] == _job_state.STOPPED_MESSAGE
        assert r["driver_exit_code"] == code


def test_stop_before_start_start_failure_and_supervisor_death():
    assert apply(_record(), "stopped", 5)["status"] == "STOPPED"
    r = apply(_record(), "start_failed", 5, reason="no such directory")
    assert r["status"] == "FAILED" and "no such directory" in r["message"] and r["end_time"] == 5
    for status in (JobStatus.PENDING, JobStatus.RUNNING):
        r = apply(_record(status), "supervisor_died", 5, reason="worker crashed")
        assert r["status"] == "FAILED" and "worker crashed" in r["message"]
        assert r["error_type"] == "JOB_SUPERVISOR_ACTOR_DIED"


@pytest.mark.parametrize("status", list(JobStatus))
@pytest.mark.parametrize("event", sorted(ALLOWED))
def test_every_event_is_refused_outside_its_statuses(status, event):
    record = _record(status)
    if status in ALLOWED[event]:
        apply(record, event, 1, exit_code=0)
    else:
        with pytest.raises(JobStateError, match=event):
            apply(record, event, 1, exit_code=0)


def test_terminal_statuses_take_no_event():
    for status in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED):
        assert status.is_terminal()
        assert not any(status in allowed for allowed in ALLOWED.values())
    assert not JobStatus.PENDING.is_terminal() and not JobStatus.RUNNING.is_terminal()


def test_unknown_event_is_refused():
    with pytest.raises(JobStateError, match="unknown job event"):
        apply(_record(), "exploded", 1)


def test_apply_does_not_change_its_input():
    record = _record()
    before = dict(record)
    apply(record, "started", 2)
    assert record == before


def test_status_is_a_str_whose_str_is_its_name():
    assert JobStatus.SUCCEEDED == "SUCCEEDED"
    assert str(JobStatus.SUCCEEDED) == "SUCCEEDED" and str(JobStatus.FAILED).endswith("FAILED")
    assert JobStatus("STOPPED") is JobStatus.STOPPED


def test_exit_code_for_the_cli():
    assert exit_code_for({"status": "SUCCEEDED", "driver_exit_code": 0}) == 0
    assert exit_code_for({"status": "FAILED", "driver_exit_code": 3}) == 3
    assert exit_code_for({"status": "FAILED", "driver_exit_code": None}) == 1
    assert exit_code_for({"status": "STOPPED", "driver_exit_code": 143}) == 1
