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
from arena_adapters.plugins import core_version, default_registry

COMMAND_MODULES = (
    "arena_adapters.cli.list_command",
    "arena_adapters.cli.info_command",
    "arena_adapters.cli.ping_command",
    "arena_adapters.cli.serve_command",
    "arena_adapters.cli.check_command",
    "arena_adapters.cli.eval_command",
    "arena_adapters.cli.demo_command",
    "arena_adapters.cli.new_plugin_command",
    "arena_adapters.cli.bench_command",
)


def commands() -> list[Command]:
    """Every subcommand, in help order."""
    return [importlib.import_module(name).COMMAND for name in COMMAND_MODULES]


def version_text() -> str:
    """``--version``: the core's version and each installed plugin's (read from metadata, no imports)."""
    infos = default_registry().plugins()
    plugins = ", ".join(
        f"{name} {info.version}" for name, info in sorted(infos.items()) if not info.builtin
    )
    return f"arena-adapters {core_version()}" + (f" (plugins: {plugins})" if plugins else "")


class _VersionAction(argparse.Action):
    """Like argparse's ``version`` action, but computes the text only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the versions of arena-adapters and its installed plugins, then exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per command.

    Abbreviated flags are refused (``--no-lod`` is not ``--no-load``): the flags of adapter options
    are added at run time, and an abbreviation could silently pick a different one.
    """
    parser = argparse.ArgumentParser(
        prog="arena-adapters",
        description="Connect robot-policy evaluation runners to VLA policy servers in their native protocols.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands():
        command_parser = sub.add_parser(command.name, help=command.help, description=command.help,
                                        allow_abbrev=False)
        command.add_arguments(command_parser)
        command_parser.set_defaults(_command=command, _parser=command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (2 for usage and configuration errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        command: Command = args._command
        if extra and not command.takes_extra:
            args._parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exit_:  # argparse's usage errors (2), --help and --version (0)
        return 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 2
    try:
        return command.run(args, extra)
    except AdapterError as exc:
        print(f"arena-adapters {command.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"arena-adapters {command.name}: interrupted", file=sys.stderr)
        return 130
