"""The `skate` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skate", description="Skate: Ray's programming model, in Python.")
    sub = parser.add_subparsers(dest="command", required=True)
    mb = sub.add_parser("microbenchmark", help="run Ray's microbenchmarks against a local cluster")
    mb.add_argument("--filter", default="", help="only metrics whose name contains this text")
    mb.add_argument("--seconds", type=float, default=1.0, help="length of one timed round")
    mb.add_argument("--rounds", type=int, default=3, help="timed rounds per metric")
    mb.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local cluster")
    for name, text in (
        ("memory", "objects and store use of a running cluster"),
        ("status", "nodes, resources used and total, pending work"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "--address", default=None, help="GCS address host:port (default: newest on this machine)"
        )
    st = sub.add_parser("start", help="start a head node (--head) or join a cluster (--address)")
    st.add_argument("--head", action="store_true", help="start the head node: GCS plus a raylet")
    st.add_argument("--address", default=None, help="the head's host:port, to join its cluster")
    st.add_argument("--port", type=int, default=6379, help="GCS port of a head node (default 6379)")
    st.add_argument(
        "--node-ip-address", default=None, help="address other nodes reach this one at (default loopback)"
    )
    st.add_argument(
        "--listen-address", default=None, help="address to bind services to, e.g. 0.0.0.0 (default: node ip)"
    )
    st.add_argument("--num-cpus", type=float, default=None)
    st.add_argument("--num-gpus", type=float, default=None)
    st.add_argument("--resources", default=None, help="custom resources as JSON, e.g. '{\"red\": 2}'")
    st.add_argument("--object-store-memory", type=int, default=None, help="bytes")
    st.add_argument("--token", default=None, help="cluster token when joining from another machine")
    st.add_argument("--block", action="store_true", help="stay in the foreground; Ctrl-C stops the node")
    sp = sub.add_parser("stop", help="stop every node started with `skate start` on this machine")
    sp.add_argument("--force", action="store_true", help="kill at once, and private clusters too")
    args = parser.parse_args(argv)
    if args.command == "start":
        from skate.scripts.start_stop import start

        if args.head and args.address:
            parser.error("give either --head or --address, not both")
        return start(args)
    if args.command == "stop":
        from skate.scripts.start_stop import stop

        return stop(args)
    if args.command == "microbenchmark":
        from skate import _microbenchmark

        _microbenchmark.run(args.filter, args.seconds, args.rounds, args.num_cpus)
    elif args.command in ("memory", "status"):
        from skate.scripts.attach import query_cluster
        from skate.scripts.report import format_memory, format_status

        try:
            nodes, reports = query_cluster(args.address, want_objects=args.command == "memory")
        except ConnectionError as exc:
            print(f"skate {args.command}: {exc}", file=sys.stderr)
            return 1
        if args.command == "memory":
            print(format_memory(reports))
        else:
            print(format_status(nodes, {r["store"]["node_id"]: r["store"] for r in reports}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
