"""The subcommand registry of `overfeat-np`: a subcommand is one `run(args)` function registered
with `@command(name, help, add_arguments)` when its module is imported."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

PROG = "overfeat-np"


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]  # args.xp: the array module `main` resolved


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Register `run(args) -> exit code or None` as subcommand `name` with its own arguments
    (`build_parser` adds the compute options every subcommand shares, `options.add_compute`)."""
    def register(run):
        COMMANDS[name] = Command(name, help, add_arguments, run)
        return run

    return register


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 1."""

    exit_code = 1


class UsageError(CLIError):
    """A bad option value (as argparse's own usage errors): one line, exit status 2."""

    exit_code = 2
