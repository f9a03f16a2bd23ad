"""`skate list`, `skate get`, `skate summary` and `skate timeline`: the state API from a shell.

They read the newest cluster on this machine (or the one --address names) through its GCS
and raylets, with the same rows as `skate.util.state`, printed as a table, JSON or YAML.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from skate.scripts._click import Command

_ADDRESS_HELP = "GCS address host:port (default: newest on this machine)"
RESOURCE_CHOICE = click.Choice(
    ["nodes", "actors", "tasks", "objects", "jobs", "placement-groups", "placement_groups", "workers"]
)
FORMATS = click.Choice(["table", "json", "yaml"])
MAX_CELL = 40


def _with_sources(address: str | None, work: Any) -> Any:
    """Run `work(sources)` against the cluster; ConnectionError if none answers."""
    from skate.scripts.attach import find_sessions
    from skate.util.state.sources import ConnectedSources

    sessions = find_sessions(address)
    if not sessions:
        raise ConnectionError(f"no running Skate cluster found{' at ' + address if address else ''}")
    errors = []
    for info in sessions:
        src = ConnectedSources(info["gcs_address"], info["token"], name="cli")

        async def run(src: ConnectedSources = src) -> Any:
            try:
                return await work(src)
            finally:
                src.close()

        try:
            return asyncio.run(run())
        except (OSError, ConnectionError) as exc:  # a stale session: try the next one
            errors.append(f"{info['session_dir']}: {exc}")
    raise ConnectionError(f"no running Skate cluster answered ({'; '.join(errors)})")


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(none)"
    columns = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def render(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, default=str)
    if fmt == "yaml":
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError:
            raise click.UsageError("--format yaml needs PyYAML (pip install pyyaml)") from None
        return yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False).rstrip()
    if isinstance(data, list):
        return format_table(data)
    return format_table([data]) if isinstance(data, dict) else str(data)


def _fail(verb: str, exc: Exception) -> int:
    print(f"skate {verb}: {exc}", file=sys.stderr)
    return 1


@click.command(
    "list", cls=Command, help="list nodes, actors, tasks, objects, jobs, placement-groups or workers"
)
@click.argument("resource", type=RESOURCE_CHOICE)
@click.option("--filter", "-f", "filters", multiple=True, help="key=value or key!=value (repeatable)")
@click.option("--limit", type=int, default=100, show_default=True, help="at most this many rows")
@click.option("--detail", is_flag=True, help="every field, not just the main ones")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.option("--address", default=None, help=_ADDRESS_HELP)
def list_cmd(
    resource: str, filters: tuple[str, ...], limit: int, detail: bool, fmt: str, address: str | None
) -> int:
    from skate._state_query import parse_filter
    from skate.util.state.sources import list_resource

    try:
        parsed = [parse_filter(f) for f in filters]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        rows, total, _ = _with_sources(
            address, lambda src: list_resource(src, resource, parsed, limit, detail)
        )
    except (ConnectionError, ValueError) as exc:
        return _fail("list", exc)
    print(render([dict(r) for r in rows], fmt))
    if total > len(rows) and fmt == "table":
        print(f"({len(rows)} of {total} shown; raise --limit to see more)", file=sys.stderr)
    return 0


@click.command("get", cls=Command, help="one node, actor, task, object, job, placement-group or worker by id")
@click.argument("resource", type=RESOURCE_CHOICE)
@click.argument("id")
@click.option("--format", "fmt", type=FORMATS, default="json", show_default=True)
@click.option("--address", default=None, help=_ADDRESS_HELP)
def get_cmd(resource: str, id: str, fmt: str, address: str | None) -> int:
    from skate.util.state.sources import ID_FIELDS, check_resource, list_resource

    try:
        name = check_resource(resource)
        rows, _, _ = _with_sources(
            address, lambda src: list_resource(src, name, [(ID_FIELDS[name], "=", id)], 10_000, True)
        )
    except (ConnectionError, ValueError) as exc:
        return _fail("get", exc)
    if not rows:
        return _fail("get", LookupError(f"no {name.rstrip('s').replace('_', ' ')} with id {id}"))
    print(render([dict(r) for r in rows] if len(rows) > 1 else dict(rows[0]), fmt))
    return 0


@click.command(
    "summary", cls=Command, help="tasks by function and state, actors by class, objects by call site"
)
@click.argument("resource", type=click.Choice(["tasks", "actors", "objects"]))
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.option("--address", default=None, help=_ADDRESS_HELP)
def summary_cmd(resource: str, fmt: str, address: str | None) -> int:
    from skate.util.state.sources import summarize

    try:
        result = _with_sources(address, lambda src: summarize(src, resource))
    except (ConnectionError, ValueError) as exc:
        return _fail("summary", exc)
    if fmt != "table":
        print(render(result, fmt))
        return 0
    rows = []
    for key, entry in result["summary"].items():
        counts = entry.get("state_counts") or entry.get("ref_type_counts") or {}
        row = {"name": key}
        row.update({k: v for k, v in entry.items() if k not in ("state_counts", "ref_type_counts")})
        row.update(counts)
        rows.append(row)
    print(format_table(rows))
    return 0


@click.command(
    "timeline", cls=Command, help="the task timeline as Chrome trace JSON (chrome://tracing, Perfetto)"
)
@click.option("--output", "-o", default=None, help="file to write (default: skate-timeline-<time>.json)")
@click.option("--address", default=None, help=_ADDRESS_HELP)
def timeline_cmd(output: str | None, address: str | None) -> int:
    import time

    from skate.util.state.sources import list_resource
    from skate.util.state.timeline import chrome_trace, write

    try:
        rows, _, _ = _with_sources(address, lambda src: list_resource(src, "tasks", None, 10_000, True))
    except (ConnectionError, ValueError) as exc:
        return _fail("timeline", exc)
    events = chrome_trace(rows)
    path = output or time.strftime("skate-timeline-%Y-%m-%d_%H-%M-%S.json")
    write(events, path)
    print(f"{len(events)} task events written to {path}; open it in chrome://tracing or ui.perfetto.dev")
    return 0


COMMANDS: list[click.Command] = [list_cmd, get_cmd, summary_cmd, timeline_cmd]
