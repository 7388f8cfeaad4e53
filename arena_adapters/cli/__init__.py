"""The ``arena-adapters`` command line.

Each subcommand is a module of this package exposing ``COMMAND``, a :class:`~arena_adapters.cli.command.Command`;
adding one means adding a module and listing it in :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from arena_adapters.cli.command import Command
from arena_adapters.errors import AdapterError

COMMAND_MODULES = (
    "arena_adapters.cli.list_command",
    "arena_adapters.cli.info_command",
    "arena_adapters.cli.ping_command",
    "arena_adapters.cli.serve_command",
    "arena_adapters.cli.check_command",
    "arena_adapters.cli.eval_command",
    "arena_adapters.cli.demo_command",
    "arena_adapters.cli.new_plugin_command",
)


def commands() -> list[Command]:
    """Every subcommand, in help order."""
    return [importlib.import_module(name).COMMAND for name in COMMAND_MODULES]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="arena-adapters",
        description="Connect robot-policy evaluation runners to VLA policy servers in their native protocols.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands():
        command_parser = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(command_parser)
        command_parser.set_defaults(_command=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    command: Command = args._command
    try:
        return command.run(args, extra)
    except AdapterError as exc:
        print(f"arena-adapters {command.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"arena-adapters {command.name}: interrupted", file=sys.stderr)
        return 130
