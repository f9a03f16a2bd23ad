"""`skate logs`: the session's log files on every node, read through each node's raylet.

    skate logs                          every alive node's log files (name, size)
    skate logs raylet.log               one file of the head node (--node-id: another node)
    skate logs --actor-id ID [--err]    the stdout (stderr) of the actor's worker
    skate logs --task-id ID [--err]     the same of the worker that ran the task's latest attempt
    --tail N (last N lines; -1 all), --follow/-f (keep printing what is appended)

Each raylet serves only the files of its own session's logs directory (`read_log` in
skate.raylet.introspect refuses other paths), so this works for every node whose raylet the
machine can reach.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click

from skate.scripts._click import Command
from skate.scripts.state_cli import _ADDRESS_HELP, _with_sources

FOLLOW_POLL_S = 0.5


class LogsError(Exception):
    """What `skate logs` reports as its one line on stderr (exit status 1)."""


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _pick_node(nodes: list[dict], node_id: str | None) -> dict:
    """The node `node_id` names (a unique prefix will do), or the head."""
    if node_id is None:
        heads = [n for n in nodes if n.get("is_head")] or nodes
        if not heads:
            raise LogsError("the cluster has no alive node")
        return heads[0]
    found = [n for n in nodes if n["node_id"].startswith(node_id)]
    if len(found) != 1:
        known = ", ".join(n["node_id"][:12] for n in nodes)
        what = "no alive node" if not found else f"{len(found)} alive nodes"
        raise LogsError(f"{what} with id {node_id!r} (alive: {known})")
    return found[0]


def _worker_file(worker_id: str | None, err: bool, what: str) -> str:
    if not worker_id:
        raise LogsError(f"{what} has no worker (yet): nothing to show")
    return f"worker-{worker_id[:12]}.{'err' if err else 'out'}"


async def _target(src: Any, nodes: list[dict], args: dict) -> tuple[dict, str]:
    """(node, file name) that the arguments name."""
    if args["actor_id"]:
        for actor in await src.gcs_call("list_actors", None):
            aid = actor["actor_id"]
            if (aid.hex() if isinstance(aid, bytes) else aid) == args["actor_id"]:
                name = _worker_file(actor.get("worker_id"), args["err"], f"actor {args['actor_id']}")
                return _pick_node(nodes, actor.get("node_id") or "?"), name
        raise LogsError(f"no actor with id {args['actor_id']}")
    if args["task_id"]:
        reply = await src.gcs_call(
            "get_task_events", {"filters": [("task_id", "=", args["task_id"])], "limit": 1000}
        )
        rows = sorted(reply["rows"], key=lambda r: r.get("attempt_number") or 0)
        if not rows:
            raise LogsError(f"no task with id {args['task_id']} in the GCS's task events")
        row = rows[-1]
        name = _worker_file(row.get("worker_id"), args["err"], f"task {args['task_id']}")
        return _pick_node(nodes, row.get("node_id") or "?"), name
    return _pick_node(nodes, args["node_id"]), args["filename"]


async def _list(src: Any, nodes: list[dict], node_id: str | None) -> None:
    chosen = [_pick_node(nodes, node_id)] if node_id else nodes
    for node in chosen:
        conn = await src.raylet(node)
        files = await conn.call("list_logs", {})
        head = " (head)" if node.get("is_head") else ""
        print(f"Node {node['node_id']}{head} {node.get('node_ip', '')}:")
        width = max((len(f["name"]) for f in files), default=0)
        for f in files:
            print(f"  {f['name'].ljust(width)}  {_size(f['size'])}")
        if not files:
            print("  (no log files)")


async def _print_file(src: Any, node: dict, name: str, tail: int, follow: bool) -> None:
    conn = await src.raylet(node)
    out = sys.stdout.buffer
    request: dict = {"name": name, "tail_lines": tail} if tail >= 0 else {"name": name, "offset": 0}
    reply = await conn.call("read_log", request)
    while True:
        out.write(reply["data"])
        out.flush()
        offset = reply["offset"]
        if offset < reply["size"]:  # more than one chunk: keep reading
            reply = await conn.call("read_log", {"name": name, "offset": offset})
            continue
        if not follow:
            return
        await asyncio.sleep(FOLLOW_POLL_S)
        reply = await conn.call("read_log", {"name": name, "offset": offset})
        if reply["size"] < offset:  # rotated (or truncated): the new file from its start
            reply = await conn.call("read_log", {"name": name, "offset": 0})


@click.command("logs", cls=Command, help="list the session's log files per node, or print one")
@click.argument("filename", required=False)
@click.option("--node-id", default=None, help="the node (a unique prefix of its id; default: the head)")
@click.option("--actor-id", default=None, help="the log of this actor's worker")
@click.option("--task-id", default=None, help="the log of the worker that ran this task")
@click.option("--err", is_flag=True, help="with --actor-id/--task-id: the worker's stderr, not its stdout")
@click.option(
    "--tail", type=int, default=1000, show_default=True, help="the last N lines (-1: the whole file)"
)
@click.option("--follow", "-f", is_flag=True, help="keep printing what is appended (until Ctrl-C)")
@click.option("--address", default=None, help=_ADDRESS_HELP)
def logs_cmd(
    filename: str | None,
    node_id: str | None,
    actor_id: str | None,
    task_id: str | None,
    err: bool,
    tail: int,
    follow: bool,
    address: str | None,
) -> int:
    from skate.protocol.connection import RemoteError

    if sum(x is not None for x in (filename, actor_id, task_id)) > 1:
        raise click.UsageError("give one of FILENAME, --actor-id and --task-id")
    if (actor_id or task_id) and node_id:
        raise click.UsageError("--node-id goes with FILENAME: an actor's or task's node is known")
    if follow and not (filename or actor_id or task_id):
        raise click.UsageError("--follow needs a file: FILENAME, --actor-id or --task-id")
    args = {"filename": filename, "node_id": node_id, "actor_id": actor_id, "task_id": task_id, "err": err}

    async def work(src: Any) -> None:
        nodes = await src.alive_nodes()
        if not (filename or actor_id or task_id):
            await _list(src, nodes, node_id)
            return
        node, name = await _target(src, nodes, args)
        await _print_file(src, node, name, tail, follow)

    try:
        _with_sources(address, work)
    except (KeyboardInterrupt, BrokenPipeError):  # Ctrl-C on --follow; `| head` has read enough
        return 0
    except RemoteError as exc:
        print(f"skate logs: {exc.message}", file=sys.stderr)
        return 1
    except (LogsError, ConnectionError) as exc:
        print(f"skate logs: {exc}", file=sys.stderr)
        return 1
    return 0


COMMANDS: list[click.Command] = [logs_cmd]
