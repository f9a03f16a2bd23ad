"""`skate memory` and `skate status`: read a running cluster from outside it."""

from __future__ import annotations

import sys
from typing import Any

import click

from skate._memory_accounting import UNITS
from skate.scripts._click import Command
from skate.scripts.report import GROUP_BY, SORT_BY

_ADDRESS_HELP = "GCS address host:port (default: newest on this machine)"


def _report(verb: str, address: str | None) -> int:
    from skate.scripts.attach import query_cluster, query_gcs_info
    from skate.scripts.report import format_gcs, format_status

    try:
        nodes, reports, groups = query_cluster(address, want_objects=False)
    except ConnectionError as exc:
        print(f"skate {verb}: {exc}", file=sys.stderr)
        return 1
    gcs = "\n".join(format_gcs(query_gcs_info(address)))
    print(format_status(nodes, {r["store"]["node_id"]: r["store"] for r in reports}, groups) + "\n" + gcs)
    print(_client_server_line(address))
    return 0


def _memory_report(address: str | None, stats_only: bool, units: str, **rows: Any) -> int:
    """The memory summary (each process's heap and shared store pages, the store, the GCS and its
    tables, totals), then, unless stats_only, the object rows grouped and sorted as asked."""
    from skate.scripts.attach import query_cluster, query_gcs_info, query_memory
    from skate.scripts.report import format_gcs, format_memory, format_memory_stats, store_line

    try:
        summary = format_memory_stats(query_memory(address), units)
        _, reports, _ = query_cluster(address, want_objects=not stats_only)
    except ConnectionError as exc:
        print(f"skate memory: {exc}", file=sys.stderr)
        return 1
    if stats_only:  # store totals per node and the GCS's tables, no object rows
        gcs = "\n".join(format_gcs(query_gcs_info(address), tables=True))
        print(summary + "\n\n" + "\n".join(store_line(r["store"]) for r in reports) + "\n" + gcs)
    else:
        print(summary + "\n\n" + format_memory(reports, units=units, **rows))
    return 0


def _client_server_line(address: str | None) -> str:
    """Where remote drivers connect (skate:// and ray://), as the head's session records it."""
    from skate.scripts.attach import find_sessions

    for session in find_sessions(address):
        client = session.get("client_server_address")
        if client:
            return f"Client server\n  {client.replace('tcp://', 'skate://')} (ray:// works too)"
    return "Client server\n  not running"


@click.command("memory", cls=Command, help="memory of a running cluster: processes, store, objects")
@click.option("--address", default=None, help=_ADDRESS_HELP)
@click.option(
    "--stats-only",
    "--stats",
    "stats_only",
    is_flag=True,
    help="only the summary: each process's heap and store pages, the store, the GCS's tables",
)
@click.option(
    "--group-by",
    type=click.Choice(GROUP_BY),
    default="NODE_ADDRESS",
    show_default=True,
    help="group object rows by node or by the call site that created them",
)
@click.option(
    "--sort-by",
    type=click.Choice(SORT_BY),
    default="OBJECT_SIZE",
    show_default=True,
    help="order of the object rows in each group",
)
@click.option(
    "--units",
    type=click.Choice(list(UNITS)),
    default="B",
    show_default=True,
    help="units of the sizes (decimal: KB = 1000 B)",
)
@click.option(
    "--num-entries",
    type=click.IntRange(min=0),
    default=None,
    help="at most this many object rows per group (default: all)",
)
def memory(
    address: str | None, stats_only: bool, group_by: str, sort_by: str, units: str, num_entries: int | None
) -> int:
    return _memory_report(
        address, stats_only, units, group_by=group_by, sort_by=sort_by, num_entries=num_entries
    )


@click.command("status", cls=Command, help="nodes, resources used and total, pending work")
@click.option("--address", default=None, help=_ADDRESS_HELP)
def status(address: str | None) -> int:
    return _report("status", address)


COMMANDS: list[click.Command] = [memory, status]
