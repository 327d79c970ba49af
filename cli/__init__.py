"""The `scalespace` command line (also `python -m scalespace.cli`).

Each group of subcommands lives in cli/<group>.py with a `register(subparsers)`
function; errors a user can cause end the command with a one-line message on
stderr and exit code 2. The groups import what their commands need (torch, the
API, Celery) inside the commands, so `scalespace --help` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from scalespace import ScalespaceError, __version__

#: command groups, in the order `scalespace --help` lists them
COMMAND_MODULES = (
    "scalespace.cli.embedded",
    "scalespace.cli.evaluate",
    "scalespace.cli.train",
    "scalespace.cli.score",
    "scalespace.cli.service",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scalespace",
        description="Sample from diffusion models and measure them as scale-spaces of distributions.",
    )
    parser.add_argument("--version", action="version", version=f"scalespace {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # a group this build does not ship
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ScalespaceError as e:
        print(f"scalespace: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scalespace: interrupted", file=sys.stderr)
        return 130
