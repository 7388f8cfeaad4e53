"""``arena-adapters new-plugin NAME``: generate a plugin package that passes ``check`` as is."""

from __future__ import annotations

import argparse
from pathlib import Path

from arena_adapters.cli.command import Command
from arena_adapters.scaffold import REUSABLE_TRANSPORTS, generate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the adapter name (lowercase identifier); the package is arena-adapters-NAME")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--reuse-transport", choices=sorted(REUSABLE_TRANSPORTS),
                      help="translators of your own on an installed protocol's transport, server and probe")
    kind.add_argument("--new-protocol", action="store_true",
                      help="a protocol of your own on the transport kit (the default)")
    parser.add_argument("--directory", type=Path, default=Path.cwd(), help="where to write the package")
    parser.add_argument("--description", help="one line for 'arena-adapters list'")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    target = generate(args.name, args.directory, reuse_transport=args.reuse_transport, description=args.description)
    print(f"wrote {target}\nnext:\n  pip install -e {target}\n  arena-adapters check {args.name}")
    return 0


COMMAND = Command("new-plugin", "generate a plugin package that passes 'check'", add_arguments, run)
