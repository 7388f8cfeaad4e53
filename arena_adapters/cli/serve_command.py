"""``arena-adapters serve NAME``: run an adapter's reference server (loopback unless told otherwise)."""

from __future__ import annotations

import argparse
import sys

from arena_adapters.cli.command import Command, parse_option_flags, port_number
from arena_adapters.errors import ConfigError
from arena_adapters.importing import import_object
from arena_adapters.options import resolve_options
from arena_adapters.plugins import FIRST_PARTY_DISTRIBUTIONS, PluginRegistry, default_registry
from arena_adapters.records import NULL_POLICY, ReferenceServerRecord

_FIXED = ("policy", "host", "port")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="adapter name whose reference server to run")
    parser.add_argument("--policy", help="'module:attr' of the policy object or callable to serve, or 'null' "
                        "for a constant chunk at no cost (default: the plugin's deterministic built-in test policy)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=None,
                        help="port, 0-65535 (default: the protocol's usual port; 0: any free port)")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    registry = default_registry()
    adapter = registry.adapter(args.name)
    if not adapter.reference_server:
        raise ConfigError(f"adapter {adapter.name!r} has no reference server")
    record = registry.part(ReferenceServerRecord, adapter.reference_server)
    owner = f"serve {adapter.name}"
    given = parse_option_flags(extra, record.options, owner, skip=_FIXED)
    options = resolve_options([o for o in record.options if o.name not in _FIXED], given, owner)
    policy = args.policy if args.policy == NULL_POLICY else (import_object(args.policy) if args.policy else None)
    if args.port is not None:
        options["port"] = args.port
    try:
        server = record.factory(policy=policy, host=args.host, **options)
    except ImportError as exc:  # a server library the core extra or the plugin did not install
        raise ConfigError(missing_server_dependency(registry, adapter.name, exc)) from exc
    print(f"serving {adapter.name} on {server.endpoint} (Ctrl-C to stop)", flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
    finally:
        server.stop()
    return 0


def missing_server_dependency(registry: PluginRegistry, adapter: str, error: ImportError) -> str:
    """What to say when a reference server cannot import one of its libraries."""
    module = error.name or str(error)
    if adapter in FIRST_PARTY_DISTRIBUTIONS:
        fix = f"pip install 'arena-adapters[{adapter}]'"
    else:
        info = registry.plugins().get(adapter)
        fix = f"install the server dependencies of {info.distribution if info else adapter!r}"
    return f"the {adapter} reference server needs the module {module!r}, which is not installed: {fix}"


COMMAND = Command("serve", "run an adapter's reference server", add_arguments, run, takes_extra=True)
