"""Flags generated from a config dataclass: ``--<field>`` per field, flat, exact field name.

Rules (ARENA.md section 3): no default -> required; ``T | None`` -> ``T``; ``list[T]`` -> ``type=T``,
``nargs`` ``+`` (required) or ``*``; ``Literal`` -> choices of one value type; ``Enum`` -> ``type=Enum``,
choices = member values; ``bool`` -> ``store_true`` when the default is False, else ``--x/--no-x``;
any other generic type (dict, tuple, ...) is refused. ``device``/``num_envs`` come from the shared
parser, whose defaults must equal the dataclass's.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import typing
from typing import Any


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _without_none(annotation: Any) -> Any:
    members = typing.get_args(annotation)
    others = [member for member in members if member is not type(None)]
    return others[0] if members and len(others) == 1 and len(others) < len(members) else annotation


def add_dataclass_cli_args(parser: argparse.ArgumentParser, cfg_type: type, excluded_fields: Any = ()) -> None:
    assert dataclasses.is_dataclass(cfg_type)
    hints = typing.get_type_hints(cfg_type)
    for field in dataclasses.fields(cfg_type):
        if field.name in excluded_fields:
            continue
        default = _default(field)
        options: dict[str, Any] = {"required": True} if default is dataclasses.MISSING else {"default": default}
        value_type = _without_none(hints[field.name])
        if typing.get_origin(value_type) is list:
            (item_type,) = typing.get_args(value_type)
            options.update(type=item_type, nargs="+" if default is dataclasses.MISSING else "*")
        elif typing.get_origin(value_type) is typing.Literal:
            choices = typing.get_args(value_type)
            assert len({type(choice) for choice in choices}) == 1, f"{field.name}: Literal of one value type"
            options.update(type=type(choices[0]), choices=choices)
        elif isinstance(value_type, type) and issubclass(value_type, enum.Enum):
            options.update(type=value_type, choices=[member.value for member in value_type])
        elif value_type is bool:
            options["action"] = "store_true" if default is False else argparse.BooleanOptionalAction
        else:
            assert typing.get_origin(value_type) is None, f"{field.name}: unsupported field type {hints[field.name]!r}"
            options["type"] = value_type
        options["help"] = field.name if options.get("required") else f"{field.name} (default: %(default)s)"
        parser.add_argument(f"--{field.name}", **options)


def assert_cli_defaults_match_dataclass(parser: argparse.ArgumentParser, cfg_type: type, names: Any) -> None:
    fields = {field.name: field for field in dataclasses.fields(cfg_type)}
    for name in names:
        action = parser._option_string_actions[f"--{name}"]
        default = _default(fields[name])
        assert default is not dataclasses.MISSING, f"Shared config field {name} must have a default"
        assert action.default == default, (
            f"{cfg_type.__name__}.{name} defaults to {default!r}, but --{name} defaults to {action.default!r}"
        )


def dataclass_from_cli(cfg_type: type, args: argparse.Namespace) -> Any:
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(cfg_type) if hasattr(args, field.name)}
    return cfg_type(**values)
