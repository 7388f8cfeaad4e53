"""``arena-adapters info NAME``: an adapter's parts and every option it takes."""

from __future__ import annotations

import argparse

from arena_adapters.cli.command import Command
from arena_adapters.plugins import default_registry
from arena_adapters.policy import PART_ROLES, POLICY_OPTIONS
from arena_adapters.records import PartRecord, ProbeRecord, ReferenceServerRecord


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="adapter name (see 'arena-adapters list')")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    registry = default_registry()
    adapter = registry.adapter(args.name)
    info = registry.plugins().get(registry.provider(adapter))
    parts: list[PartRecord] = [registry.part(kind, getattr(adapter, role)) for role, kind in PART_ROLES.items()]
    if adapter.reference_server:
        parts.append(registry.part(ReferenceServerRecord, adapter.reference_server))
    if adapter.probe:
        parts.append(registry.part(ProbeRecord, adapter.probe))
    print(f"{adapter.name}: {adapter.description}")
    if info is not None:
        print(f"  distribution: {info.distribution} {info.version} (module {info.module})")
    print(f"  protocol: {adapter.protocol or '?'}")
    if adapter.defaults:
        print(f"  defaults: {dict(adapter.defaults)}")
    for record in parts:
        print(f"  {record.kind} {record.name!r}: {record.description}")
        for option in record.options:
            print(f"      {option.describe()}")
    print("  policy options (every adapter):")
    for option in POLICY_OPTIONS:
        print(f"      {option.describe()}")
    return 0


COMMAND = Command("info", "show an adapter's parts and options", add_arguments, run)
