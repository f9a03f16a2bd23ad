"""The click classes every `skate` verb is built from.

click raises some usage errors (an option missing its value, say) without the context they
arose in; these classes attach it, so the error can name the verb and show its usage line as
argparse did. Verb modules use `cls=Command` for commands and `cls=Group` for verb families
with sub-verbs (`skate job submit`); a group's sub-commands get these classes by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click


class _ContextOnUsageErrors(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            if exc.ctx is None:
                exc.ctx = ctx
            raise


class Command(_ContextOnUsageErrors):
    """A `skate` verb."""


class Group(_ContextOnUsageErrors, click.Group):
    """A `skate` verb family with sub-verbs; its sub-commands and sub-groups are of these classes."""

    command_class = Command
    group_class = type  # sub-groups are of this same class


def check_verbs(module: str, commands: Sequence[Any]) -> None:
    """Refuse a verb module whose commands are not built from these classes."""
    for command in commands:
        if not isinstance(command, (Command, Group)):
            raise TypeError(
                f"{module}: `skate {getattr(command, 'name', command)}` must be made with "
                "cls=skate.scripts._click.Command (or Group)"
            )
