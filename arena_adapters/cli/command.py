"""The shape of a CLI subcommand, and flags built from declared options."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from arena_adapters.errors import ConfigError
from arena_adapters.options import Option


@dataclass(frozen=True)
class Command:
    """One ``arena-adapters`` subcommand.

    Attributes:
        name: the subcommand word.
        help: one line for ``--help``.
        add_arguments: adds the command's fixed arguments to its parser.
        run: ``run(args, extra) -> exit code``; ``extra`` holds the arguments argparse did not know,
            typically the flags of a plugin's own options (see :func:`parse_option_flags`).
        takes_extra: whether the command accepts arguments beyond its fixed ones (adapter option
            flags, pytest arguments); for the others an unknown argument is a usage error (exit 2).
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, list[str]], int]
    takes_extra: bool = False


def port_number(text: str) -> int:
    """An argparse ``type``: a TCP port, ``0`` (any free port) to ``65535``."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number (0-65535), got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number (0-65535; 0 picks a free one), got {port}")
    return port


def non_negative_int(text: str) -> int:
    """An argparse ``type``: an integer >= 0."""
    return _int_at_least(text, 0)


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer >= 1."""
    return _int_at_least(text, 1)


def _int_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
    return value


def flag_of(option_name: str) -> str:
    """``"api_token"`` -> ``"--api-token"``."""
    return "--" + option_name.replace("_", "-")


def parse_option_flags(
    extra: Sequence[str], options: Iterable[Option], owner: str, skip: Iterable[str] = ()
) -> dict[str, Any]:
    """Parse ``--flag value`` pairs for declared options (bools also as bare ``--flag``).

    Values stay strings; :func:`~arena_adapters.options.resolve_options` converts them.

    Raises:
        ConfigError: a flag that no option declares (the message lists the valid ones).
    """
    declared = {flag_of(o.name): o for o in options if o.name not in set(skip)}
    parser = argparse.ArgumentParser(prog=owner, add_help=False, allow_abbrev=False)
    for flag, option in declared.items():
        if option.type is bool:
            parser.add_argument(flag, dest=option.name, nargs="?", const="true", default=None)
        else:
            parser.add_argument(flag, dest=option.name, default=None)
    namespace, unknown = parser.parse_known_args(list(extra))
    if unknown:
        valid = ", ".join(sorted(declared)) or "(none)"
        raise ConfigError(f"unknown argument(s) {unknown} for {owner}; its options: {valid}")
    return {key: value for key, value in vars(namespace).items() if value is not None}
