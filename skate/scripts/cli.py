"""The `skate` command: one click group, with each verb family in a module of its own.

A verb family is a module of `skate.scripts` holding a `COMMANDS` list of click commands or
groups (`start_stop`: start, stop; `cluster_info`: memory, status; `microbenchmark`). Adding a
family (`job`, `list`/`get`/`summary`, `logs`, `timeline`) is one new module and one line in
`VERB_MODULES`; its commands are made with `skate.scripts._click.Command` (or `Group`
for sub-verbs, `skate job submit`). Heavy imports stay inside the commands, so `skate --help` is quick.

Usage errors (a bad or missing flag value, an unknown verb, flags that exclude each other)
are reported as argparse did: `usage: ...` then `skate VERB: error: ...` on stderr, exit
status 2. A verb's failure to do its work is exit status 1 with one line on stderr.
"""

from __future__ import annotations

import importlib
import sys

import click

from skate.scripts._click import Group, check_verbs

VERB_MODULES = (
    "skate.scripts.start_stop",
    "skate.scripts.cluster_info",
    "skate.scripts.microbenchmark",
    "skate.scripts.job",
    "skate.scripts.state_cli",
    "skate.scripts.logs_cli",
)

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


@click.group(
    cls=Group,
    context_settings=CONTEXT_SETTINGS,
    invoke_without_command=True,
    no_args_is_help=False,
    help="Skate: Ray's programming model, in Python.",
)
@click.pass_context
def cli(ctx: click.Context) -> None:
    if ctx.invoked_subcommand is None:
        # As argparse's required sub-command: a usage error, whatever click's version does.
        verbs = ", ".join(sorted(cli.commands))
        raise click.UsageError(f"a command is required, one of: {verbs}", ctx)


def _register() -> None:
    for name in VERB_MODULES:
        commands = importlib.import_module(name).COMMANDS
        check_verbs(name, commands)
        for command in commands:
            if command.name in cli.commands:
                raise RuntimeError(f"{name} registers `skate {command.name}`, which is already taken")
            cli.add_command(command)


_register()


def _usage_error(exc: click.UsageError) -> int:
    """Print a usage error the way argparse did, and return its exit status (2)."""
    ctx = exc.ctx
    if ctx is not None:
        usage = ctx.get_usage()
        if usage.startswith("Usage:"):
            usage = "usage:" + usage[len("Usage:") :]
        click.echo(usage, err=True)
        where = ctx.command_path
    else:
        where = "skate"
    click.echo(f"{where}: error: {exc.format_message()}", err=True)
    return exc.exit_code


def main(argv: list[str] | None = None) -> int:
    """Run `skate ARGV` (sys.argv[1:] by default); returns the exit status."""
    try:
        result = cli.main(args=argv, prog_name="skate", standalone_mode=False)
    except click.UsageError as exc:
        return _usage_error(exc)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
