"""`skate job submit|status|logs|stop|list|delete`: jobs on a running cluster, as `ray job`.

Every verb takes --address (the job server: http://host:port, a cluster address, or SKATE_ADDRESS /
RAY_ADDRESS; by default the head on this machine). On the head's machine the cluster token is
found in its session; elsewhere set SKATE_AUTH_TOKEN. `skate job submit` without --no-wait
follows the job's log and exits with its outcome: 0 when it succeeded, its entrypoint's exit
code when that failed, 1 when it was stopped. A request the server refuses, or no server, is
exit status 1 with one line on stderr.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import time
from typing import Any

import click

from skate.scripts._click import Group

RULE = "-" * 54


def _client(address: str | None, headers: str | None = None) -> Any:
    from skate.job_submission import JobSubmissionClient

    parsed = _json_option("--headers", headers, dict) if headers else None
    try:
        return JobSubmissionClient(address, headers=parsed)
    except (ConnectionError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def _json_option(flag: str, value: str | None, kind: type) -> Any:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise click.UsageError(f"{flag} must be JSON: {exc}") from None
    if not isinstance(parsed, kind):
        raise click.UsageError(f"{flag} must be a JSON {kind.__name__}, got {value!r}")
    return parsed


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run an SDK call; the server's refusal or no server becomes a one-line error (exit 1)."""
    from skate.exceptions import JobSubmissionError

    try:
        return fn(*args, **kwargs)
    except (JobSubmissionError, ConnectionError) as exc:
        raise click.ClickException(str(exc)) from None


def _submit_with_upload_notes(client: Any, **kwargs: Any) -> str:
    """submit_job, printing what the SDK says about uploading packages; a bad local path or a
    package over the size limit is a one-line error."""
    import logging

    from skate.runtime_env.packaging import PackageTooLargeError

    sdk_logger = logging.getLogger("skate.job_submission")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    sdk_logger.addHandler(handler)
    level = sdk_logger.level
    sdk_logger.setLevel(logging.INFO)
    try:
        return client.submit_job(**kwargs)
    except (PackageTooLargeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        sdk_logger.removeHandler(handler)
        sdk_logger.setLevel(level)


def _follow(client: Any, job_id: str) -> None:
    """Print the job's log until it ends; while it is still PENDING, show the wait on stderr."""
    from skate.scripts._progress import Progress

    pending = _call(client.get_job_status, job_id).value == "PENDING"
    progress = Progress(f"waiting for job '{job_id}' to start") if pending else None

    async def tail() -> None:
        if progress is not None:
            progress.start()
        try:
            async for chunk in client.tail_job_logs(job_id):
                if progress is not None:
                    progress.stop()
                sys.stdout.write(chunk)
                sys.stdout.flush()
        finally:
            if progress is not None:
                progress.stop()

    _call(asyncio.run, tail())


def _outcome(client: Any, job_id: str) -> int:
    """Print how the job ended; the exit status that says it."""
    from skate import _job_state

    while True:  # the log stream ends when the job does; its record may lag a moment
        info = _call(client.get_job_info, job_id)
        if info.status.is_terminal():
            break
        time.sleep(0.2)
    word = {"SUCCEEDED": "succeeded", "FAILED": "failed", "STOPPED": "was stopped"}[info.status.value]
    click.echo(RULE)
    click.echo(f"Job '{job_id}' {word}")
    click.echo(RULE)
    if info.status.value == "FAILED" and info.message:
        click.echo(f"Status message: {info.message.splitlines()[0]}")
    return _job_state.exit_code_for({"status": info.status.value, "driver_exit_code": info.driver_exit_code})


address_option = click.option(
    "--address",
    default=None,
    help="the job server, e.g. http://127.0.0.1:8265 "
    "(default: SKATE_ADDRESS, RAY_ADDRESS, or this machine's head)",
)
headers_option = click.option("--headers", default=None, help="extra HTTP headers as JSON")


@click.group("job", cls=Group, help="submit, follow and stop jobs on a running cluster")
def job_group() -> None:
    pass


@job_group.command("submit", help="submit a job: skate job submit [OPTIONS] -- ENTRYPOINT...")
@address_option
@click.option(
    "--submission-id", "--job-id", "submission_id", default=None, help="the job's id (default: a new one)"
)
@click.option("--runtime-env-json", default=None, help="the job's runtime env as JSON")
@click.option(
    "--working-dir",
    default=None,
    help="the job's working directory: a local directory or .zip (uploaded to the cluster) or a gcs:// URI",
)
@click.option(
    "--metadata-json", default=None, help="metadata to keep with the job, as a JSON object of strings"
)
@click.option("--entrypoint-num-cpus", type=float, default=None, help="CPUs reserved for the entrypoint")
@click.option("--entrypoint-num-gpus", type=float, default=None, help="GPUs reserved for the entrypoint")
@click.option(
    "--entrypoint-memory", type=int, default=None, help="memory reserved for the entrypoint (bytes)"
)
@click.option("--entrypoint-resources", default=None, help="custom resources for the entrypoint, as JSON")
@click.option("--no-wait", is_flag=True, help="do not follow the job's log; return once it is submitted")
@headers_option
@click.argument("entrypoint", nargs=-1, required=True, type=click.UNPROCESSED)
def submit_command(
    address: str | None,
    submission_id: str | None,
    runtime_env_json: str | None,
    working_dir: str | None,
    metadata_json: str | None,
    entrypoint_num_cpus: float | None,
    entrypoint_num_gpus: float | None,
    entrypoint_memory: int | None,
    entrypoint_resources: str | None,
    no_wait: bool,
    headers: str | None,
    entrypoint: tuple[str, ...],
) -> int:
    runtime_env = _json_option("--runtime-env-json", runtime_env_json, dict) or {}
    if working_dir is not None:
        runtime_env["working_dir"] = working_dir
    # One argument is a shell command as written; several are quoted back into one.
    command = entrypoint[0] if len(entrypoint) == 1 else shlex.join(entrypoint)
    client = _client(address, headers)
    click.echo(f"Job submission server address: {client.address}")
    job_id = _call(
        _submit_with_upload_notes,
        client,
        entrypoint=command,
        submission_id=submission_id,
        runtime_env=runtime_env,
        metadata=_json_option("--metadata-json", metadata_json, dict),
        entrypoint_num_cpus=entrypoint_num_cpus,
        entrypoint_num_gpus=entrypoint_num_gpus,
        entrypoint_memory=entrypoint_memory,
        entrypoint_resources=_json_option("--entrypoint-resources", entrypoint_resources, dict),
    )
    click.echo("")
    click.echo(RULE)
    click.echo(f"Job '{job_id}' submitted successfully")
    click.echo(RULE)
    click.echo("")
    click.echo("Next steps")
    click.echo("  Query the logs of the job:")
    click.echo(f"    skate job logs {job_id}")
    click.echo("  Query the status of the job:")
    click.echo(f"    skate job status {job_id}")
    click.echo("  Request the job to be stopped:")
    click.echo(f"    skate job stop {job_id}")
    click.echo("")
    if no_wait:
        return 0
    click.echo("Tailing logs until the job exits (disable with --no-wait):")
    _follow(client, job_id)
    return _outcome(client, job_id)


@job_group.command("status", help="print a job's status")
@address_option
@headers_option
@click.argument("job_id")
def status_command(address: str | None, headers: str | None, job_id: str) -> int:
    info = _call(_client(address, headers).get_job_info, job_id)
    click.echo(f"Status for job '{job_id}': {info.status.value}")
    if info.message:
        click.echo(f"Status message: {info.message}")
    return 0


@job_group.command("logs", help="print a job's log (with --follow, until it ends)")
@address_option
@headers_option
@click.option(
    "--follow", "-f", is_flag=True, help="keep printing the log as it is written, until the job ends"
)
@click.argument("job_id")
def logs_command(address: str | None, headers: str | None, follow: bool, job_id: str) -> int:
    client = _client(address, headers)
    if follow:
        _follow(client, job_id)
    else:
        click.echo(_call(client.get_job_logs, job_id), nl=False)
    return 0


@job_group.command("stop", help="stop a job (SIGTERM, then SIGKILL after a grace period)")
@address_option
@headers_option
@click.option("--no-wait", is_flag=True, help="return once the stop is asked for")
@click.argument("job_id")
def stop_command(address: str | None, headers: str | None, no_wait: bool, job_id: str) -> int:
    client = _client(address, headers)
    click.echo(f"Attempting to stop job '{job_id}'")
    if not _call(client.stop_job, job_id):
        info = _call(client.get_job_info, job_id)
        click.echo(f"Job '{job_id}' has already ended: {info.status.value}")
        return 0
    if no_wait:
        return 0
    click.echo(f"Waiting for job '{job_id}' to exit (disable with --no-wait):")
    while not _call(client.get_job_status, job_id).is_terminal():
        time.sleep(0.2)
    click.echo(f"Job '{job_id}' was stopped")
    return 0


@job_group.command("list", help="list every job: submitted ones and drivers")
@address_option
@headers_option
def list_command(address: str | None, headers: str | None) -> int:
    jobs = _call(_client(address, headers).list_jobs)
    rows = [("SUBMISSION_ID", "JOB_ID", "TYPE", "STATUS", "ENTRYPOINT")]
    for job in sorted(jobs, key=lambda j: j.start_time or 0):
        rows.append(
            (
                job.submission_id or "-",
                job.job_id or "-",
                job.type.value,
                job.status.value,
                job.entrypoint or "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])
    return 0


@job_group.command("delete", help="forget a job that has ended (its record and log)")
@address_option
@headers_option
@click.argument("job_id")
def delete_command(address: str | None, headers: str | None, job_id: str) -> int:
    _call(_client(address, headers).delete_job, job_id)
    click.echo(f"Job '{job_id}' deleted successfully")
    return 0


COMMANDS: list[click.Command] = [job_group]
