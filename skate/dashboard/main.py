"""The dashboard process: `python -m skate.dashboard.main --session-dir ... --gcs-address ...`.

It prints `READY <url>` once it listens (the node waits for that line, as for the GCS and the
raylet), and stops on SIGTERM/SIGINT, when the process that owns the cluster goes (the
--watch-fd pipe, for private clusters), or when the session directory is removed (its
cluster is gone).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys

from skate import _event_loop
from skate._log_files import log_to_rotating_file
from skate._procutil import watch_parent_pipe
from skate._secure_files import read_token
from skate.dashboard.server import DashboardContext, GcsClient, make_app, serve

# The route modules, in order; a new part of the dashboard (state API, web page) is one line.
ROUTE_MODULES = (
    "skate.dashboard.modules.version",
    "skate.dashboard.modules.job",
    "skate.dashboard.modules.state",
    "skate.dashboard.modules.web",
)
SESSION_CHECK_S = 2.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="skate-dashboard")
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8265)
    parser.add_argument(
        "--port-fallback", action="store_true", help="if --port is taken, listen on any free port instead"
    )
    parser.add_argument("--watch-fd", type=int, default=-1)
    parser.add_argument("--logging-level", type=int, default=logging.INFO)
    args = parser.parse_args(argv)
    log_to_rotating_file(os.path.join(args.session_dir, "logs", "dashboard.log"), args.logging_level)
    token = read_token(args.session_dir)
    # The dashboard's own driver (it starts job supervisors) joins this cluster, never a new one.
    os.environ["SKATE_AUTH_TOKEN"] = token.decode()
    os.environ["SKATE_ENABLE_AUTO_CONNECT"] = "0"
    ctx = DashboardContext(args.session_dir, args.gcs_address, token, GcsClient(args.gcs_address, token))
    app = make_app(ctx, [importlib.import_module(name) for name in ROUTE_MODULES])
    loop = _event_loop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        runner, url = loop.run_until_complete(serve(app, args.host, args.port, args.port_fallback))
    except OSError as exc:
        print(
            f"skate dashboard: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr, flush=True
        )
        sys.exit(1)
    stopped = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    if args.watch_fd >= 0:
        watch_parent_pipe(loop, args.watch_fd, stopped.set)

    async def watch_session() -> None:
        while not stopped.is_set():
            await asyncio.sleep(SESSION_CHECK_S)
            if not os.path.isdir(args.session_dir):
                stopped.set()

    watcher = loop.create_task(watch_session())
    print(f"READY {url}", flush=True)
    loop.run_until_complete(stopped.wait())
    watcher.cancel()
    loop.run_until_complete(runner.cleanup())
    loop.close()


if __name__ == "__main__":
    main()
