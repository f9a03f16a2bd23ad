"""The dashboard: an HTTP server on the head node, in a process of its own.

`skate start --head` starts it (unless `--include-dashboard false`), on 127.0.0.1:8265 by
default; a private `init()` cluster only with `include_dashboard=True`. It is a client of the
GCS like any other, so it never slows the GCS down, and it is the home of the job API now
(`modules.job`) and of the state API and the web page later: each is a route module plugged
in by `main.ROUTE_MODULES` (see `server` for the contract and the auth guard).
"""
