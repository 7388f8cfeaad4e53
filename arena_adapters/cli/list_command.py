"""``arena-adapters list``: installed adapters with distribution, version, protocol and load status.

A plugin loads when its module imports and every part its adapters name resolves; one whose parts
come from a plugin that is not installed is listed as ``not loadable`` with the install that fixes it.
"""

from __future__ import annotations

import argparse
import contextlib

from arena_adapters.cli.command import Command
from arena_adapters.errors import PluginError, UnknownAdapterError
from arena_adapters.plugins import default_registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-load", action="store_true", help="read entry points only; import no plugin")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    registry = default_registry()
    rows = [("NAME", "DISTRIBUTION", "VERSION", "PROTOCOL", "STATUS")]
    for name, info in sorted(registry.plugins().items()):
        protocol = "?"
        if not args.no_load and name not in registry.blocked:
            with contextlib.suppress(PluginError, UnknownAdapterError):
                registry.check_dependencies(name)  # its status says what is missing and how to install it
            with contextlib.suppress(PluginError, UnknownAdapterError):
                protocol = registry.adapter(name).protocol or "?"
        rows.append((name, info.distribution, info.version, protocol, registry.status(name)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[4])
    return 0


COMMAND = Command("list", "list installed adapters and whether they load", add_arguments, run)
