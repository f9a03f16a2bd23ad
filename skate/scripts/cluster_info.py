"""`skate memory` and `skate status`: read a running cluster from outside it."""

from __future__ import annotations

import sys

import click

from skate.scripts._click import Command

_ADDRESS_HELP = "GCS address host:port (default: newest on this machine)"


def _report(verb: str, address: str | None, stats: bool = False) -> int:
    from skate.scripts.attach import query_cluster, query_gcs_info
    from skate.scripts.report import format_gcs, format_memory, format_status

    try:
        nodes, reports, groups = query_cluster(address, want_objects=verb == "memory" and not stats)
    except ConnectionError as exc:
        print(f"skate {verb}: {exc}", file=sys.stderr)
        return 1
    gcs = "\n".join(format_gcs(query_gcs_info(address), tables=stats))
    if verb == "memory" and stats:  # store totals per node and the GCS's tables, no object rows
        print(format_memory(reports).split("\n\n")[0] + "\n" + gcs)
    elif verb == "memory":
        print(format_memory(reports))
    else:
        print(format_status(nodes, {r["store"]["node_id"]: r["store"] for r in reports}, groups) + "\n" + gcs)
        print(_client_server_line(address))
    return 0


def _client_server_line(address: str | None) -> str:
    """Where remote drivers connect (skate:// and ray://), as the head's session records it."""
    from skate.scripts.attach import find_sessions

    for session in find_sessions(address):
        client = session.get("client_server_address")
        if client:
            return f"Client server\n  {client.replace('tcp://', 'skate://')} (ray:// works too)"
    return "Client server\n  not running"


@click.command("memory", cls=Command, help="objects and store use of a running cluster")
@click.option("--address", default=None, help=_ADDRESS_HELP)
@click.option("--stats", is_flag=True, help="only the totals: store use per node and the GCS's table sizes")
def memory(address: str | None, stats: bool) -> int:
    return _report("memory", address, stats)


@click.command("status", cls=Command, help="nodes, resources used and total, pending work")
@click.option("--address", default=None, help=_ADDRESS_HELP)
def status(address: str | None) -> int:
    return _report("status", address)


COMMANDS: list[click.Command] = [memory, status]
