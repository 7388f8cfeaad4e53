"""Declared options of adapter parts, and their validation.

Each part (translator, transport, server) declares the keyword options its factory takes as a tuple
of :class:`Option`. The core validates user configuration against these declarations, so an error
always names the option, what was expected and what arrived; the CLI builds its flags from them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from arena_adapters.errors import ConfigError

_REQUIRED = object()

SECRET_NAMES = re.compile(r"(token|secret|password|passwd|api_?key|credential|auth)", re.IGNORECASE)
"""Option names that are secret even when not declared so (``api_token``, ``api_key``, ...)."""

MASK = "***"
"""What a secret option's value shows as in reports, listings, logs and error messages."""


@dataclass(frozen=True)
class Option:
    """One keyword option a part's factory accepts.

    Attributes:
        name: the keyword name (also the CLI flag, with ``_`` written as ``-``).
        type: the expected Python type (``int``, ``float``, ``str``, ``bool``, ``dict``, ``list``,
            or ``object`` for anything). Strings from the CLI are converted to it.
        default: the value used when the option is not given. Leave it out to make the option required.
        help: one line for ``arena-adapters info`` and ``--help``.
        choices: the allowed values, if the option is an enumeration.
        minimum: the smallest allowed value (inclusive), for numbers.
        above: a bound the value must exceed (exclusive), for numbers.
        check: an optional predicate on the converted value, with ``check_text`` describing it.
        secret: the value is a credential: reports, ``info``, logs and error messages show it masked.
            Options whose name looks like one (:data:`SECRET_NAMES`) are secret anyway.
        parse: turns a string (from the command line, a YAML scalar) into the value, for structured
            options; it may raise ``ValueError`` with the reason. Without it, ``tuple`` and ``list``
            options read ``"180,320"`` or ``"180x320"`` (items as int, float or str) and ``dict``
            options read JSON or ``"a=1,b=x"``.
    """

    name: str
    type: type = object
    default: Any = _REQUIRED
    help: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    above: float | None = None
    check: Callable[[Any], bool] | None = field(default=None, compare=False)
    check_text: str = ""
    secret: bool = False
    parse: Callable[[str], Any] | None = field(default=None, compare=False)

    @property
    def is_secret(self) -> bool:
        """True when the value must never be shown (declared secret, or a credential's name)."""
        return self.secret or is_secret_name(self.name)

    def shown(self, value: Any) -> str:
        """``repr(value)``, or the mask for a secret option's value."""
        return MASK if self.is_secret and value is not None else repr(value)

    @property
    def required(self) -> bool:
        """True when the option has no default."""
        return self.default is _REQUIRED

    def convert(self, value: Any, owner: str = "") -> Any:
        """Return ``value`` converted to this option's type, or raise :class:`ConfigError`."""
        where = f" (for {owner})" if owner else ""
        shown = self.shown(value)
        if isinstance(value, str) and self.parse is not None:
            try:
                value = self.parse(value)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"option {self.name!r}{where}: cannot read {shown}: {exc}") from None
        converted = _convert(value, self.type, self.name, where, shown)
        if self.choices is not None and converted not in self.choices:
            raise ConfigError(
                f"option {self.name!r}{where}: expected one of {list(self.choices)}, got {shown}"
            )
        if converted is not None and self.minimum is not None and converted < self.minimum:
            raise ConfigError(f"option {self.name!r}{where}: expected a value >= {self.minimum:g}, got {shown}")
        if converted is not None and self.above is not None and converted <= self.above:
            raise ConfigError(f"option {self.name!r}{where}: expected a value > {self.above:g}, got {shown}")
        if self.check is not None and converted is not None and not self.check(converted):
            raise ConfigError(f"option {self.name!r}{where}: expected {self.check_text}, got {shown}")
        return converted

    def describe(self) -> str:
        """A one-line description: type, default and help."""
        default = "required" if self.required else f"default {self.shown(self.default)}"
        choices = f", one of {list(self.choices)}" if self.choices else ""
        return f"{self.name} ({self.type.__name__}, {default}{choices}) {self.help}".rstrip()


def is_secret_name(name: str) -> bool:
    """True for option names that hold credentials (``api_token``, ``api_key``, ``password`` ...)."""
    return bool(SECRET_NAMES.search(name))


def masked(options: Mapping[str, Any], declared: Mapping[str, Option] | None = None) -> dict[str, Any]:
    """``options`` with every secret value replaced by :data:`MASK`, for reports and logs.

    An option is secret when ``declared`` says so or its name looks like a credential's; nested
    maps are masked alike.
    """
    declared = declared or {}
    shown: dict[str, Any] = {}
    for name, value in options.items():
        option = declared.get(name)
        secret = option.is_secret if option is not None else is_secret_name(str(name))
        if secret and value is not None:
            shown[name] = MASK
        elif isinstance(value, Mapping):
            shown[name] = masked(value, declared)
        else:
            shown[name] = value
    return shown


def parse_scalar(text: str) -> int | float | str:
    """``"3"`` -> 3, ``"0.5"`` -> 0.5, anything else stays a str (stripped)."""
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_sequence(text: str) -> list[Any]:
    """``"180,320"``, ``"180x320"``, ``"[180, 320]"`` -> ``[180, 320]`` (items by :func:`parse_scalar`)."""
    text = text.strip()
    if text.startswith("["):
        value = json.loads(text)
        if not isinstance(value, list):
            raise ValueError(f"expected a JSON list, got {text!r}")
        return value
    separator = "," if "," in text else ("x" if re.fullmatch(r"\s*[\d.]+(\s*x\s*[\d.]+)+\s*", text) else None)
    items = text.split(separator) if separator else [text]
    return [parse_scalar(item) for item in items if item.strip()]


def parse_mapping(text: str) -> dict[str, Any]:
    """JSON object text, or ``"a=1,b=x"`` -> ``{"a": 1, "b": "x"}``."""
    text = text.strip()
    if text.startswith("{"):
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError(f"expected a JSON object, got {text!r}")
        return value
    mapping: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, equals, raw = item.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"expected KEY=VALUE items, got {item!r}")
        mapping[key.strip()] = parse_scalar(raw)
    return mapping


def _convert(value: Any, expected: type, name: str, where: str, shown: str) -> Any:
    if value is None or expected is object or (isinstance(value, expected) and not (
        expected is int and isinstance(value, bool)
    )):
        return value
    if isinstance(value, str):
        try:
            if expected is bool:
                lowered = value.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if expected in (int, float):
                return expected(value)
            if expected in (list, tuple):
                return expected(parse_sequence(value))
            if expected is dict:
                return parse_mapping(value)
        except ValueError:
            pass
    elif expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    elif expected in (list, tuple) and isinstance(value, (list, tuple)):
        return expected(value)
    raise ConfigError(
        f"option {name!r}{where}: expected {expected.__name__}, got {type(value).__name__} {shown}"
    )


def resolve_options(
    declared: Sequence[Option], given: Mapping[str, Any], owner: str
) -> dict[str, Any]:
    """Pick, convert and default the options in ``declared`` from ``given``.

    Keys of ``given`` that ``declared`` does not name are ignored here (another part may take them);
    :func:`reject_unknown` reports the ones nobody takes.

    Raises:
        ConfigError: a required option is missing or a value cannot be converted.
    """
    resolved: dict[str, Any] = {}
    for option in declared:
        if option.name in given:
            resolved[option.name] = option.convert(given[option.name], owner)
        elif option.required:
            raise ConfigError(f"option {option.name!r} (for {owner}) is required: {option.help}")
        else:
            resolved[option.name] = option.default
    return resolved


def reject_unknown(given: Iterable[str], known: Iterable[str], owner: str) -> None:
    """Raise :class:`ConfigError` naming every key of ``given`` not in ``known``."""
    known_set = set(known)
    unknown = sorted(set(given) - known_set)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {unknown} for {owner}; valid options: {sorted(known_set)}"
        )
