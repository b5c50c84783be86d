"""The `overfeat-np` command line (also `python -m overfeat_np`).

    overfeat-np demo [--quick] [--out runs/demo]       # all three tasks -> runs/demo/showcase.png
    overfeat-np train (--data ROOT | --synthetic N) [--model small] [--epochs 10] [--resume] ...
    overfeat-np evaluate [--task classification|localization|detection] ...
    overfeat-np classify IMAGE... --checkpoint PATH [--top-k 5] [--scales 1,2,4,6]
    overfeat-np features IMAGE... --checkpoint PATH --layer K [--out DIR]
    overfeat-np train-regressor | localize | train-detector | detect | evaluate-detection ...

Every subcommand takes --backend numpy|cupy, --blas-threads N and --no-progress; --scales means
the same everywhere (`scales.parse_scales`: Table-5 scale numbers and sizes, mixed), and --out
names every output. Expected failures (missing files, an unusable backend, a checkpoint of another
model, a bad --scales) print one line and exit 1; set OVERFEAT_DEBUG=1 to see the traceback.

Modules, each importing only those listed before it:
    registry   Command, @command, CLIError, COMMANDS
    options    the shared options and the inputs behind them (model, class names, images, data)
    train, classify, features, localize, detect, demo   one task each, registered on import
    evaluate   evaluate --task ...; uses localize's and detect's runners
    __init__   build_parser, main: resolves the backend once and applies --blas-threads
"""

from __future__ import annotations

import argparse
import os
import sys

from ..backend import BackendError, get_backend
from ..blas import default_threads, limit_blas
from ..data import CorruptImageError
from ..memory import reuse_freed_memory
from . import classify, demo, detect, evaluate, features, localize, train  # noqa: F401  (register)
from .options import add_compute
from .registry import COMMANDS, PROG, CLIError, command

__all__ = ["COMMANDS", "CLIError", "build_parser", "command", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line (the problem, and where the full usage is)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="OverFeat (Sermanet et al., ICLR 2014) in NumPy/CuPy")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        add_compute(p)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 error, 2 usage error, 130 Ctrl-C)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        # Resolved once, before any work (with the install hint); below here only the module travels.
        args.xp = get_backend(vars(args).pop("backend"))
        reuse_freed_memory()  # this process is ours: keep freed blocks instead of unmapping them
        with limit_blas(args.blas_threads or default_threads()):  # one policy for every subcommand
            return COMMANDS[args.command].run(args) or 0
    except KeyboardInterrupt as exc:  # train saves the run first and says where (`train`)
        print(f"{PROG}: interrupted" + (f": {exc}" if str(exc) else ""), file=sys.stderr)
        return 130
    except (CLIError, BackendError, FileNotFoundError, CorruptImageError, ValueError, FloatingPointError) as exc:
        return _fail(args, exc, str(exc), getattr(exc, "exit_code", 1))
    except OSError as exc:  # mostly an output that cannot be written: a file in the way, no permission
        where = exc.filename or "a file"
        return _fail(args, exc, f"cannot use {where}: {exc.strerror or exc}; check the path and its permissions "
                           "(for an output folder: choose another --out)", 1)


def _fail(args, exc: Exception, message: str, code: int) -> int:
    """One line on stderr (the traceback with OVERFEAT_DEBUG=1); returns the exit status."""
    if os.environ.get("OVERFEAT_DEBUG"):
        raise exc
    print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
    return code
