"""`skate start` and `skate stop`: long-lived clusters outside any driver."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass

import click

from skate._node import LocalNode, owned_sessions, stop_detached
from skate._secure_files import read_private
from skate.scripts._click import Command
from skate.scripts._progress import Progress


@dataclass(frozen=True)
class StartOptions:
    """The flags of `skate start`."""

    head: bool = False
    address: str | None = None
    port: int = 6379
    node_ip_address: str | None = None
    listen_address: str | None = None
    num_cpus: float | None = None
    num_gpus: float | None = None
    resources: str | None = None
    labels: str | None = None
    object_store_memory: int | None = None
    token: str | None = None
    block: bool = False
    token_file: str | None = None
    include_dashboard: bool = True
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int | None = None
    client_server_port: int | None = None  # None: the default, 10001, if it is free
    ray_client_server_port: int | None = None  # Ray's spelling of the same
    storage: str | None = None
    redis_password: str | None = None
    metrics_export_port: int | None = None  # the raylet's Prometheus endpoint; None: any free port


TOKEN_IN_ARGV_WARNING = (
    "skate start: warning: --token puts the cluster token on the command line, where every user of "
    "this machine can read it (ps); prefer SKATE_AUTH_TOKEN or --token-file"
)


def _token_for(address: str, explicit: str | None, token_file: str | None = None) -> bytes:
    """The cluster token, from the first of: --token-file (a 0600 file of ours), --token (accepted
    with a warning: argv is public), SKATE_AUTH_TOKEN, the head's session on this machine, or a
    prompt when stdin is a terminal."""
    if token_file:
        try:
            token = read_private(token_file).strip()
        except OSError as exc:
            raise SystemExit(f"skate start: cannot use --token-file {token_file}: {exc}") from None
        if not token:
            raise SystemExit(f"skate start: --token-file {token_file} is empty")
        return token
    if explicit:
        click.echo(TOKEN_IN_ARGV_WARNING, err=True)
        return explicit.encode()
    if os.environ.get("SKATE_AUTH_TOKEN"):
        return os.environ["SKATE_AUTH_TOKEN"].encode()
    from skate.scripts.attach import find_sessions

    sessions = find_sessions(address)
    if sessions:
        return sessions[0]["token"]
    if sys.stdin is not None and sys.stdin.isatty():
        return str(click.prompt(f"Cluster token for {address}", hide_input=True)).strip().encode()
    raise SystemExit(
        f"skate start: no cluster token for {address}: on the head's machine it is read from its session "
        "directory; elsewhere set SKATE_AUTH_TOKEN or pass --token-file (a 0600 file holding the token; "
        "the head printed where the token is)."
    )


def _check_port_free(host: str, port: int, flag: str = "--port") -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the GCS binds: TIME_WAIT is fine
        try:
            s.bind((host, port))
        except OSError as exc:
            raise SystemExit(f"skate start: port {port} on {host} is not free ({exc}); use {flag}") from None


def _client_server_port(args: StartOptions, host: str) -> int | None:
    """The client server's port: the one asked for (which must be free), else 10001 when free
    (another head on this machine may hold it: then this one runs without a client server)."""
    from skate.client.address import DEFAULT_CLIENT_PORT

    explicit = args.client_server_port or args.ray_client_server_port
    if explicit:
        _check_port_free(host, explicit, "--ray-client-server-port")
        return explicit
    try:
        _check_port_free(host, DEFAULT_CLIENT_PORT, "--ray-client-server-port")
    except SystemExit:
        click.echo(
            f"skate start: warning: port {DEFAULT_CLIENT_PORT} is taken; no client server started "
            "(give --ray-client-server-port)",
            err=True,
        )
        return None
    return DEFAULT_CLIENT_PORT


def _metrics_export_port(args: StartOptions, host: str) -> int:
    """The node's metrics port: the one asked for (which must be free), else 0 (any free port)."""
    port = args.metrics_export_port
    if port is None or port <= 0:
        return 0
    _check_port_free(host, port, "--metrics-export-port")
    return port


def head_storage(args: StartOptions) -> str:
    """The head GCS's storage: --storage, else SKATE_GCS_STORAGE, else Ray's RAY_REDIS_ADDRESS
    (host:port), else an SQLite file in the session directory. Checked here (ValueError)."""
    from skate.gcs.storage import parse_spec

    spec = args.storage or os.environ.get("SKATE_GCS_STORAGE") or ""
    if not spec and os.environ.get("RAY_REDIS_ADDRESS"):
        address = os.environ["RAY_REDIS_ADDRESS"]
        spec = address if "://" in address else f"redis://{address}"
    spec = spec or "sqlite"
    parse_spec(spec)
    return spec


def start(args: StartOptions) -> int:
    """Start a head node (--head) or join the cluster at --address; detached unless --block."""
    from skate._api import node_resources_for

    try:
        custom = json.loads(args.resources) if args.resources else None
    except ValueError as exc:
        raise SystemExit(f"skate start: --resources must be JSON, e.g. '{{\"gpu_a\": 1}}': {exc}") from None
    from skate._labels import parse_labels_arg

    try:
        labels = parse_labels_arg(args.labels) if args.labels else {}
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="'--labels'") from None
    ip = args.node_ip_address or "127.0.0.1"
    try:
        resources, store = node_resources_for(
            args.num_cpus, args.num_gpus, custom, args.object_store_memory, head=args.head, node_ip=ip
        )
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"skate start: {exc}") from None
    if args.head:
        try:
            storage = head_storage(args)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'--storage'") from None
        password = args.redis_password or os.environ.get("RAY_REDIS_PASSWORD") or None
        _check_port_free(args.listen_address or ip, args.port)
        client_port = _client_server_port(args, args.listen_address or ip)
        try:
            with Progress("skate start: starting the head node"):
                node = LocalNode(
                    resources=resources,
                    object_store_memory=store,
                    head=True,
                    node_ip=ip,
                    listen_ip=args.listen_address,
                    gcs_port=args.port,
                    shared=True,
                    detached=not args.block,
                    labels=labels,
                    include_dashboard=args.include_dashboard,
                    dashboard_host=args.dashboard_host,
                    dashboard_port=args.dashboard_port,
                    client_server_port=client_port,
                    storage=storage,
                    redis_password=password,
                    metrics_export_port=_metrics_export_port(args, args.listen_address or ip),
                )
        except RuntimeError as exc:
            raise SystemExit(f"skate start: the head node did not start: {exc}") from None
        print(f"Skate head node started: cluster address {node.address} (node {node.node_id[:12]}).")
        if node.dashboard_url:
            print(f"  Dashboard and job API:       {node.dashboard_url}")
            token_file = os.path.join(node.session_dir, "token")
            print(f"  Dashboard in a browser:      {node.dashboard_url}/?token=<the token in {token_file}>")
            submit = f"skate job submit --address {node.dashboard_url} -- python app.py"
            print(f"  Submit a job:                {submit}")
        print(f"  Add a node on this machine:  skate start --address {node.address}")
        print(
            f"  Add a node elsewhere:        SKATE_AUTH_TOKEN=$(cat {node.session_dir}/token) "
            f"skate start --address {node.address}"
        )
        driver = f'skate.init(address="auto")  or  skate.init(address="{node.address}")'
        print(f"  Connect a driver:            {driver}")
        if node.client_server_address:
            port = node.client_server_address.rpartition(":")[2]
            print(f'  Connect from another machine: skate.init("skate://<this host>:{port}")')
        print("  Stop every node here:        skate stop")
    else:
        if not args.address:
            raise SystemExit(
                "skate start: give --head to start a cluster, or --address HOST:PORT to join one"
            )
        token = _token_for(args.address, args.token, args.token_file)
        try:
            with Progress(f"skate start: joining the cluster at {args.address}"):
                node = LocalNode(
                    resources=resources,
                    object_store_memory=store,
                    head=False,
                    gcs_address=args.address,
                    token=token,
                    node_ip=ip,
                    listen_ip=args.listen_address,
                    shared=True,
                    detached=not args.block,
                    labels=labels,
                    metrics_export_port=_metrics_export_port(args, args.listen_address or ip),
                )
        except RuntimeError as exc:
            raise SystemExit(f"skate start: could not join the cluster at {args.address}: {exc}") from None
        print(f"Skate node {node.node_id[:12]} joined the cluster at {args.address}.")
    sys.stdout.flush()
    if args.block:
        stop: list[int] = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        try:
            while not stop and all(p.poll() is None for p in node.processes):
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        node.shutdown()
    return 0


def stop(force: bool = False) -> int:
    """Stop every node `skate start` started on this machine; force kills at once, and
    stops drivers' private clusters too."""
    stopped = 0
    for session in owned_sessions():  # never act on a session another user planted
        path = os.path.join(session, "cluster.json")
        try:
            with open(path) as f:
                info = json.load(f)
        except (OSError, ValueError):
            continue
        if not info.get("detached") and not force:
            continue  # a driver's private cluster: it stops with its driver
        if not info.get("detached"):
            _kill_private(session)
        pids = stop_detached(session, force=force)
        stopped += 1
        kind = "head" if info.get("head") else "node"
        print(f"stopped {kind} {info.get('node_id', '?')[:12]} ({len(pids)} processes)")
    if not stopped:
        print("no Skate nodes were running")
    return 0


def _kill_private(session: str) -> None:
    import psutil

    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if session in " ".join(proc.info["cmdline"] or []):
                proc.kill()
        except psutil.Error:
            pass


@click.command("start", cls=Command, help="start a head node (--head) or join a cluster (--address)")
@click.option("--head", is_flag=True, help="start the head node: GCS plus a raylet")
@click.option("--address", default=None, help="the head's host:port, to join its cluster")
@click.option("--port", type=int, default=6379, help="GCS port of a head node (default 6379)")
@click.option(
    "--node-ip-address", default=None, help="address other nodes reach this one at (default loopback)"
)
@click.option(
    "--listen-address", default=None, help="address to bind services to, e.g. 0.0.0.0 (default: node ip)"
)
@click.option("--num-cpus", type=float, default=None)
@click.option("--num-gpus", type=float, default=None)
@click.option("--resources", default=None, help="custom resources as JSON, e.g. '{\"red\": 2}'")
@click.option(
    "--labels",
    default=None,
    help="node labels, as 'zone=a,disk=ssd' or JSON '{\"zone\": \"a\"}'",
)
@click.option("--object-store-memory", type=int, default=None, help="bytes")
@click.option(
    "--token",
    default=None,
    help="cluster token when joining from another machine (visible in ps: prefer SKATE_AUTH_TOKEN "
    "or --token-file)",
)
@click.option(
    "--token-file",
    default=None,
    type=click.Path(dir_okay=False),
    help="a file (mode 0600, yours) holding the cluster token",
)
@click.option(
    "--storage",
    default=None,
    help="where the GCS keeps its tables: memory, sqlite[:PATH] (default: a file in the session), "
    "or redis://HOST:PORT[/DB] (also SKATE_GCS_STORAGE, RAY_REDIS_ADDRESS)",
)
@click.option(
    "--redis-password", default=None, help="password of the Redis storage (also RAY_REDIS_PASSWORD)"
)
@click.option("--block", is_flag=True, help="stay in the foreground; Ctrl-C stops the node")
@click.option(
    "--include-dashboard",
    type=click.BOOL,
    default=True,
    show_default=True,
    help="start the dashboard (the job API) with the head",
)
@click.option("--dashboard-host", default="127.0.0.1", show_default=True, help="address the dashboard binds")
@click.option(
    "--dashboard-port",
    type=int,
    default=None,
    help="the dashboard's port (default 8265, or a free port if taken)",
)
@click.option(
    "--client-server-port",
    type=int,
    default=None,
    help="port of the client server for skate:// and ray:// drivers (head only; default 10001)",
)
@click.option("--ray-client-server-port", type=int, default=None, help="Ray's name for --client-server-port")
@click.option(
    "--metrics-export-port",
    type=int,
    default=None,
    help="port of this node's Prometheus endpoint, GET /metrics with 'Authorization: Bearer <cluster "
    "token>' (default: any free port; the port is MetricsExportPort in skate.nodes())",
)
def start_command(**flags) -> int:
    options = StartOptions(**flags)
    if options.head and options.address:
        raise click.UsageError("give either --head or --address, not both")
    return start(options)


@click.command("stop", cls=Command, help="stop every node started with `skate start` on this machine")
@click.option("--force", is_flag=True, help="kill at once, and private clusters too")
def stop_command(force: bool) -> int:
    return stop(force)


COMMANDS: list[click.Command] = [start_command, stop_command]
