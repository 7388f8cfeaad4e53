"""The options an adapter takes, for building command-line flags (``eval``, Isaac Lab Arena)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from arena_adapters.errors import ConfigError
from arena_adapters.options import Option
from arena_adapters.plugins import PluginRegistry, default_registry
from arena_adapters.policy import PART_ROLES, declared_options, part_records


def adapter_options(
    name: str, parts: Mapping[str, str] | None = None, registry: PluginRegistry | None = None
) -> tuple[Option, ...]:
    """Every option ``load_policy(name, ...)`` accepts: the policy options, then each part's.

    Args:
        name: the adapter.
        parts: part swaps by role (``{"observation_translator": "gr00t.generic"}``).

    Raises:
        UnknownAdapterError: no such adapter or part.
        ConfigError: the swapped parts speak different protocols.
    """
    registry = registry or default_registry()
    records = part_records(registry, registry.adapter(name), parts or {})
    return tuple(declared_options(records).values())


def split_part_flags(arguments: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Take ``--transport``, ``--observation-translator`` and ``--action-translator`` (part swaps)
    out of ``arguments``; return them by role and the remaining arguments."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for role in PART_ROLES:
        parser.add_argument("--" + role.replace("_", "-"), dest=role, default=None)
    namespace, rest = parser.parse_known_args(list(arguments))
    return {role: value for role, value in vars(namespace).items() if value is not None}, rest


def parse_key_values(items: Sequence[str] | None, what: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}`` (values stay str; options convert them).

    Raises:
        ConfigError: an item without ``=``.
    """
    parsed: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what}: expected KEY=VALUE, got {item!r}")
        parsed[key.strip().replace("-", "_")] = value
    return parsed
