"""`skate microbenchmark`: Ray's microbenchmarks against a local cluster."""

from __future__ import annotations

import click

from skate.scripts._click import Command


@click.command("microbenchmark", cls=Command, help="run Ray's microbenchmarks against a local cluster")
@click.option("--filter", "name_filter", default="", help="only metrics whose name contains this text")
@click.option("--seconds", type=float, default=1.0, help="length of one timed round")
@click.option("--rounds", type=int, default=3, help="timed rounds per metric")
@click.option("--num-cpus", type=int, default=None, help="CPUs of the local cluster")
def microbenchmark(name_filter: str, seconds: float, rounds: int, num_cpus: int | None) -> int:
    from skate import _client_microbenchmark, _microbenchmark

    results = _microbenchmark.run(name_filter, seconds, rounds, num_cpus)
    kw = dict(seconds=seconds, rounds=rounds, pattern=name_filter, results=results)
    _client_microbenchmark.run_client_metrics(kw, num_cpus)
    return 0


COMMANDS: list[click.Command] = [microbenchmark]
