"""``arena-adapters check NAME``: run the conformance kit against an installed adapter."""

from __future__ import annotations

import argparse
import os

from arena_adapters.cli.command import Command
from arena_adapters.errors import ConfigError
from arena_adapters.plugins import default_registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="adapter name to check")
    parser.add_argument("-k", dest="select", help="only the contract clauses matching this pytest -k expression")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    try:
        import pytest
    except ImportError as exc:
        raise ConfigError("'check' needs pytest: pip install 'arena-adapters[testing]'") from exc
    default_registry().adapter(args.name)  # a clear error for an unknown name, before pytest starts
    os.environ["ARENA_ADAPTERS_CHECK_ADAPTER"] = args.name
    pytest_args = ["-q", "-p", "no:cacheprovider", "--pyargs", "arena_adapters.testing.check_adapter", *extra]
    if args.select:
        pytest_args += ["-k", args.select]
    return int(pytest.main(pytest_args))


COMMAND = Command("check", "run the conformance kit against an adapter", add_arguments, run, takes_extra=True)
